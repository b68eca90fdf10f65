/** The entry of dist/ebadge.js. */
import { run } from '../cli.js';

run();
