// A headless Chromium for browser tests that needs nothing from apt: @sparticuz/chromium's
// build, driven by playwright-core (never `npx playwright install`).
//
// That package unpacks Chromium into the OS temp dir and reuses whatever it finds there
// (chromium, libEGL.so, libGLESv2.so, libvk_swiftshader.so, fonts/): files another version
// left make Chromium die with SIGTRAP ("eglGetProcAddress not found"), and a run killed
// mid-unpack leaves a truncated binary that is reused as if whole. It finds the temp dir
// through TMPDIR (os.tmpdir()), so we give it a directory of our own per package version:
// unpacked under a temporary name and renamed into place once whole, checked by
// launching, and unpacked afresh once if that launch fails.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { lstat, mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { chromium as playwright, type Browser } from "playwright-core";

/**
 * Playwright already passes the first four by default; they are named here because this
 * machine's network is closed: Chromium's background fetches (component updates, sync,
 * first-run and field-trial requests) are refused there, and must not be what a test
 * waits on. `--no-sandbox`: Chromium's sandbox will not run as root, as suites here do. `--disable-gpu`: no GPU here; software
 * compositing. chromium.args is not used: it is tuned for AWS Lambda. Its --in-process-gpu
 * is what turns bad GL libraries into the browser's death (with the GPU in its own
 * process, as here, Chromium survives a GPU crash); --single-process and
 * --disable-web-security would change what the test checks; and its --disable-features
 * would replace Playwright's own list.
 */
const CHROMIUM_ARGS = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--no-sandbox",
  "--disable-gpu",
];

const LAUNCH_TIMEOUT_MS = 60_000;

export interface LaunchOptions {
  /** Where this package version is unpacked. @default <os temp dir>/pgtide-chromium-<version>-<uid> */
  unpackDir?: string;
}

/**
 * Launches headless Chromium. `PGTIDE_TEST_CHROMIUM=/usr/bin/chromium` uses that binary
 * instead (e.g. Debian's, where it is installed); by default, @sparticuz/chromium's.
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  const explicit = process.env.PGTIDE_TEST_CHROMIUM;
  if (explicit) return playwright.launch({ executablePath: explicit, args: CHROMIUM_ARGS, timeout: LAUNCH_TIMEOUT_MS });

  const { version } = await packageOf();
  const dir = options.unpackDir ?? path.join(os.tmpdir(), `pgtide-chromium-${version}-${process.getuid?.() ?? "user"}`);
  let reused: Error | undefined;
  const state = await stateOf(dir);
  if (state === "foreign") {
    throw new Error(`${dir} is not a directory of yours that only you can write to: remove it (or pass another unpackDir)`);
  }
  if (state === "ours") {
    const attempt = await tryLaunch(path.join(dir, "chromium"), version);
    if (!(attempt instanceof Error)) return attempt;
    reused = attempt;
    // Broken (truncated, tampered with): set aside atomically, so a racing run that
    // already renamed a good one in is not the one removed.
    const aside = `${dir}.broken-${process.pid}-${randomBytes(4).toString("hex")}`;
    await rename(dir, aside).catch(() => {});
    await rm(aside, { recursive: true, force: true });
  }
  await unpack(dir);
  const attempt = await tryLaunch(path.join(dir, "chromium"), version);
  if (attempt instanceof Error) {
    throw new Error(`Chromium from @sparticuz/chromium ${version}, freshly unpacked in ${dir}, does not start: ${attempt.message}` +
      (reused ? `\n(the copy found there first failed too: ${reused.message})` : ""), { cause: attempt });
  }
  return attempt;
}

/** Launches, and checks it is the version the package ships (a stray binary is not). */
async function tryLaunch(executablePath: string, version: string): Promise<Browser | Error> {
  let browser: Browser;
  try {
    browser = await playwright.launch({ executablePath, args: CHROMIUM_ARGS, timeout: LAUNCH_TIMEOUT_MS });
  } catch (error) {
    return error as Error;
  }
  const major = version.split(".")[0];
  if (browser.version().split(".")[0] === major) return browser;
  await browser.close();
  return new Error(`${executablePath} is Chromium ${browser.version()}, not ${major}.x`);
}

async function unpack(dir: string): Promise<void> {
  await removeAbandoned(dir);
  const staging = `${dir}.unpacking-${process.pid}-${randomBytes(4).toString("hex")}`;
  await mkdir(staging, { mode: 0o700 });
  try {
    const executable = await unpackInto(staging);
    if (executable !== path.join(staging, "chromium")) throw new Error(`@sparticuz/chromium unpacked to ${executable}, not into ${staging}`);
    await rename(staging, dir).catch(async (error: NodeJS.ErrnoException) => {
      // A racing run renamed its whole unpack into place first: use that one.
      if (!((error.code === "ENOTEMPTY" || error.code === "EEXIST") && (await stateOf(dir)) === "ours")) throw error;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Runs the package's own unpacking in a child process whose TMPDIR is `dir`: changing
 * TMPDIR in this process would also move the temp files of whatever else runs here
 * meanwhile (Playwright puts each browser's profile there).
 */
async function unpackInto(dir: string): Promise<string> {
  const script = `const { default: chromium } = await import("@sparticuz/chromium"); process.stdout.write(await chromium.executablePath());`;
  const child = spawn(process.execPath, ["--input-type=module", "--eval", script], {
    cwd: import.meta.dirname, // where the bare specifier resolves from
    env: { ...process.env, TMPDIR: dir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const [code] = (await once(child, "close")) as [number | null];
  if (code !== 0) throw new Error(`unpacking @sparticuz/chromium into ${dir} failed (exit ${code}): ${stderr}`);
  return stdout;
}

/** Unpacks whose process died midway (their names carry its pid): 200 MB each. */
async function removeAbandoned(dir: string): Promise<void> {
  const prefix = `${path.basename(dir)}.`;
  for (const name of await readdir(path.dirname(dir)).catch(() => [])) {
    const pid = Number(name.startsWith(prefix) ? /^(?:unpacking|broken)-(\d+)-/.exec(name.slice(prefix.length))?.[1] : undefined);
    if (pid > 0 && !isAlive(pid)) await rm(path.join(path.dirname(dir), name), { recursive: true, force: true });
  }
}

/** Whether `dir` is ours: a real directory owned by us that no one else can write to (the
 * temp dir is shared: anyone could have made a directory of that name, with anything in it). */
async function stateOf(dir: string): Promise<"absent" | "ours" | "foreign"> {
  const stats = await lstat(dir).catch(() => undefined);
  if (!stats) return "absent";
  return stats.isDirectory() && stats.uid === process.getuid?.() && (stats.mode & 0o022) === 0 ? "ours" : "foreign";
}

async function packageOf(): Promise<{ version: string }> {
  // Its exports do not include package.json: walk up from its entry point.
  let dir = path.dirname(createRequire(import.meta.url).resolve("@sparticuz/chromium"));
  for (;;) {
    try {
      const pkg = JSON.parse(await readFile(path.join(dir, "package.json"), "utf8")) as { name?: string; version: string };
      if (pkg.name === "@sparticuz/chromium") return pkg;
    } catch {
      // not this level
    }
    if (path.dirname(dir) === dir) throw new Error("cannot find @sparticuz/chromium's package.json");
    dir = path.dirname(dir);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
