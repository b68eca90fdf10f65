/**
 * Whether the hub may use a file it is told to read, checked before anything else runs so that `check-config` and
 * the run refuse the same files with the same sentence (docs/operations.md, "Files and modes").
 *
 * The rule an operator deploys to (everything in /etc/ebadge root:ebadge 0640, the folder 0750):
 *  - a secret (the broker password file, a TLS client key, the private key file) may be read by its owner and by
 *    its group when that group is one the hub runs in; nobody but its owner may write it; others get nothing.
 *    `ebadge:ebadge 0600` passes too. A group the hub is not in is refused even when the hub can read the file as
 *    its owner: every member of that group can read it as well.
 *  - a file that says whom to trust (the config itself, the keyring, a CA or certificate) may be read by anyone but
 *    written by no other user: a world-writable keyring lets any local user add a peer.
 *  - every file must exist and be readable by the hub's user, which only a check run as that user can tell.
 * Root is held to the same rule except the group one: it runs `check-config` or the key tools for the service's
 * user, and is in none of its groups.
 */
import { closeSync, openSync, readFileSync, type Stats, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import * as path from 'node:path';

/** Who will read the files: the process's effective ids. */
export interface FileReader {
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups (systemd's User= gets the user's groups from /etc/group, plus SupplementaryGroups=). */
  readonly groups: readonly number[];
}

/** What must hold for the file: a secret, a file whose content we trust, or plain data. */
export type FileRole = 'secret' | 'trusted' | 'data';

/** Why a file cannot be used: what it must be, and what it is, naming the file, its mode and the command to run. */
export interface FileProblem {
  /** MODE: the file is there and readable, but its mode or group is unsafe for its role. */
  readonly kind: 'MISSING' | 'UNREADABLE' | 'MODE';
  readonly expected: string;
  readonly found: string;
}

/** The running process as a reader; undefined where there are no POSIX ids (Windows), and no mode to check. */
export function currentReader(): FileReader | undefined {
  if (process.geteuid === undefined || process.getegid === undefined || process.getgroups === undefined)
    return undefined;
  return { uid: process.geteuid(), gid: process.getegid(), groups: process.getgroups() };
}

export const EXPECTED: Record<FileRole, string> = {
  secret: "a secret file only its owner and the hub's group may read and only its owner may write",
  trusted: 'a file no other user may write',
  data: 'a readable file',
};

/** Checks one file for the role; undefined when the hub may use it. */
export function fileProblem(
  file: string,
  role: FileRole,
  reader: FileReader | undefined = currentReader(),
): FileProblem | undefined {
  const expected = EXPECTED[role];
  let st: Stats;
  try {
    st = statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    if (code === 'ENOENT' || code === 'ENOTDIR')
      return { kind: 'MISSING', expected: 'an existing file', found: `no file ${file} (${code})` };
    if (code === 'EACCES')
      return {
        kind: 'UNREADABLE',
        expected,
        found: `${unreachable(file, reader)} (chgrp ${groupName(reader?.gid)} and chmod 0750)`,
      };
    return { kind: 'UNREADABLE', expected, found: `${file}, which cannot be read (${code})` };
  }
  if (!st.isFile())
    return {
      kind: 'UNREADABLE',
      expected: 'a regular file',
      found: `${file}, ${st.isDirectory() ? 'a directory' : 'not a regular file'}`,
    };
  if (reader !== undefined) {
    const bad = badBits(st, role, reader);
    if (bad !== undefined)
      return { kind: 'MODE', expected, found: `${file} with mode ${octal(st.mode)}${bad.why}: run ${bad.fix(file)}` };
  }
  try {
    closeSync(openSync(file, 'r'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const fix =
      code === 'EACCES' || code === 'EPERM'
        ? `: run chgrp ${groupName(reader?.gid)} ${file} and chmod g+r ${file}`
        : '';
    return { kind: 'UNREADABLE', expected, found: `${file}, which ${who(reader)} may not read (${code})${fix}` };
  }
  return undefined;
}

/**
 * Whether the hub can keep its state in `dir`: an existing directory it may write and enter, or one it may create (the
 * nearest existing folder on its path writable by it). A read-only file system is no problem of the installation: the
 * hub runs from memory until the disk takes writes (docs/hub.md, "Storage faults").
 */
export function directoryProblem(
  dir: string,
  reader: FileReader | undefined = currentReader(),
): FileProblem | undefined {
  const expected = `a state directory ${who(reader)} may write, or create`;
  let at = dir;
  for (;;) {
    let st: Stats;
    try {
      st = statSync(at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      if (code === 'ENOENT' && path.dirname(at) !== at) {
        at = path.dirname(at);
        continue;
      }
      if (code === 'EACCES')
        return {
          kind: 'UNREADABLE',
          expected,
          found: unreachable(dir, reader),
        };
      return { kind: 'UNREADABLE', expected, found: `${at}, which cannot be read (${code})` };
    }
    const owner = reader === undefined ? undefined : userName(st.uid);
    if (!st.isDirectory())
      return {
        kind: 'UNREADABLE',
        expected,
        found: `${at}, ${at === dir ? 'not a directory' : 'not a directory on the path'}`,
      };
    if (reader === undefined || mayWrite(st, reader)) return undefined;
    const fix =
      at === dir
        ? `run chown ${userName(reader.uid)} ${dir} (it is ${owner}'s, mode ${octal(st.mode)})`
        : `create it: install -d -o ${userName(reader.uid)} -g ${groupName(reader.gid)} -m 0700 ${dir}`;
    return {
      kind: 'MODE',
      expected,
      found:
        at === dir
          ? `${dir}, which ${who(reader)} may not write: ${fix}`
          : `no directory ${dir}, and ${who(reader)} may not create it in ${at} (${owner}'s, mode ${octal(st.mode)}): ${fix}`,
    };
  }
}

/** Write and search permission on a directory for `reader`, from its mode (root may always). */
function mayWrite(st: Stats, r: FileReader): boolean {
  if (r.uid === 0) return true;
  const m = st.mode;
  if (st.uid === r.uid) return (m & 0o300) === 0o300;
  if (st.gid === r.gid || r.groups.includes(st.gid)) return (m & 0o030) === 0o030;
  return (m & 0o003) === 0o003;
}

function badBits(
  st: Stats,
  role: FileRole,
  reader: FileReader,
): { why: string; fix: (file: string) => string } | undefined {
  const mode = st.mode & 0o777;
  if (role === 'data') return undefined;
  if (role === 'trusted') {
    if ((mode & 0o002) === 0) return undefined;
    return { why: ', writable by every user', fix: (f) => `chmod o-w ${f}` };
  }
  const open = (mode & 0o007) !== 0;
  const groupWrite = (mode & 0o020) !== 0;
  if (open || groupWrite) {
    const why = [open ? 'open to every user' : '', groupWrite ? 'writable by its group' : ''].filter(Boolean);
    const fix = [groupWrite ? 'g-w' : '', open ? 'o-rwx' : ''].filter(Boolean).join(',');
    return { why: `, ${why.join(' and ')}`, fix: (f) => `chmod ${fix} ${f}` };
  }
  const ours = st.gid === reader.gid || reader.groups.includes(st.gid);
  if ((mode & 0o070) === 0 || ours || reader.uid === 0) return undefined;
  return {
    why: ` and group ${groupName(st.gid)}, which ${who(reader)} is not in`,
    fix: (f) => `chgrp ${groupName(reader.gid)} ${f}, or chmod g-rwx ${f} if the hub's user owns it`,
  };
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** "the user ebadge": the hub's user, as the operator knows it. */
function who(reader: FileReader | undefined): string {
  if (reader === undefined) return 'the hub';
  try {
    return `the user ${userInfo().uid === reader.uid ? userInfo().username : reader.uid}`;
  } catch {
    return `the user ${reader.uid}`;
  }
}

function group(reader: FileReader | undefined): string {
  return `the group ${groupName(reader?.gid)}`;
}

/** A path under a folder the reader may not search (EACCES), and the fix. */
function unreachable(at: string, reader: FileReader | undefined): string {
  return `${at}, which ${who(reader)} may not reach (EACCES): give ${group(reader)} access to the folders on its path`;
}

/**
 * The name of user or group `id` from `file` (/etc/passwd or /etc/group: Node has no getpwuid or getgrgid), else
 * its number (no such file: the number says it as well).
 */
function nameIn(file: string, id: number): string {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [name, , n] = line.split(':');
      if (name !== undefined && name !== '' && Number(n) === id) return name;
    }
  } catch {
    // no such file: the number says it as well
  }
  return String(id);
}

/** A user's name from /etc/passwd, else its number. */
function userName(uid: number): string {
  return nameIn('/etc/passwd', uid);
}

/** A group's name from /etc/group, else its number. */
export function groupName(gid: number | undefined): string {
  return gid === undefined ? "the hub's group" : nameIn('/etc/group', gid);
}
