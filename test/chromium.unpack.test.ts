// The browser tests' Chromium (test/support/chromium.ts) needs nothing from apt: it is
// unpacked from @sparticuz/chromium into a directory of its own, a broken unpack found
// there is replaced rather than reused, and runs racing to unpack end with one whole copy.
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "./support/chromium.js";

const TIMEOUT = 120_000;
let root: string;
const browsers: Browser[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "pgtide-chromium-test-"));
});
afterAll(async () => {
  await Promise.all(browsers.map((browser) => browser.close()));
  await rm(root, { recursive: true, force: true });
});

async function launch(unpackDir: string): Promise<Browser> {
  const browser = await launchChromium({ unpackDir });
  browsers.push(browser);
  return browser;
}

async function rendersText(browser: Browser): Promise<string | null> {
  const page = await browser.newPage();
  await page.setContent(`<p id="p">rendered</p>`);
  return page.textContent("#p");
}

describe("launchChromium", () => {
  it("replaces a broken unpack it finds instead of reusing it", { timeout: TIMEOUT }, async () => {
    const dir = path.join(root, "broken");
    expect(await rendersText(await launch(dir))).toBe("rendered");
    expect((await lstat(path.join(dir, "chromium"))).size).toBeGreaterThan(50_000_000);

    // What a run killed mid-unpack, or files from elsewhere, leave: a binary that dies
    // at once with SIGTRAP, as Chromium does with another version's libGLESv2.so.
    await rm(path.join(dir, "chromium")); // (the first browser still runs it: no overwriting in place)
    await writeFile(path.join(dir, "chromium"), "#!/bin/sh\nkill -TRAP $$\n");
    await chmod(path.join(dir, "chromium"), 0o700);
    expect(await rendersText(await launch(dir))).toBe("rendered");
    expect((await lstat(path.join(dir, "chromium"))).size).toBeGreaterThan(50_000_000);
    expect(await readdir(root)).toEqual(["broken"]); // the broken copy is gone, not set aside
  });

  it("ends with one whole unpack when two launches race", { timeout: TIMEOUT }, async () => {
    const dir = path.join(root, "race");
    const both = await Promise.all([launch(dir), launch(dir)]);
    for (const browser of both) expect(await rendersText(browser)).toBe("rendered");
    expect((await readdir(root)).filter((name) => name.startsWith("race"))).toEqual(["race"]);
  });

  it("refuses a directory of that name that others can write to", { timeout: TIMEOUT }, async () => {
    const dir = path.join(root, "foreign");
    await mkdir(dir);
    await chmod(dir, 0o777); // as anyone could make it in the shared temp dir
    await expect(launchChromium({ unpackDir: dir })).rejects.toThrow(`${dir} is not a directory of yours`);
  });
});
