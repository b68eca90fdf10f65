/**
 * Child-process entry: runs one job (one scenario, one contender, one repetition) in a fresh Node process, so the
 * reported peak RSS is that contender's alone, and nothing another client allocated, JIT-compiled or left for the
 * garbage collector can bias the next run. The job arrives as JSON in argv[2]; the result goes back over IPC.
 */
import { describeError } from './peers/index.js';
import { type Job, runJob } from './scenarios.js';

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (arg === undefined || process.send === undefined)
    throw new Error('worker.js is started by amqp.js (fork, with a job)');
  let message: unknown;
  if (arg === 'ping') {
    message = { pong: true };
  } else {
    try {
      const r = await runJob(JSON.parse(arg) as Job);
      // getrusage(2) ru_maxrss, in KiB on Linux: the process's own high-water mark.
      r.maxRss = process.resourceUsage().maxRSS * 1024;
      message = { result: r };
    } catch (err) {
      message = { error: describeError(err) };
    }
  }
  // Exit once the answer is out: a client that leaves a timer or socket behind must not hold the run up.
  process.send(message, () => process.exit(0));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
