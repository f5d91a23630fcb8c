// The browser check of `cargo test --test cli browser` (tests/cli/browser.rs): drives a
// headless Chromium over geoexp's upload page and over static HTML pages (the run and sweep
// reports), and prints what it saw as one JSON object on stdout. It asserts nothing itself:
// the Rust test reads the JSON and decides.
//
//   node check.mjs SPEC.json        (or the spec itself, inline, as the one argument)
//
// SPEC: {
//   "chromium": "/usr/bin/chromium",        // executable to launch
//   "out_dir": "/abs/folder",               // screenshots go here
//   "timeout_ms": 30000,                    // every single wait
//   "upload": null | {                      // the page `geoexp serve` serves at /
//     "url": "http://127.0.0.1:PORT/",
//     "locations": [{ "uuid": "...", "files": { "0": "/abs/0.jpg", "90": ..., "180": ..., "270": ... } }],
//     "screenshot": "upload.png"
//   },
//   "pages": [{ "name": "run-report", "path": "/abs/report.html", "screenshot": "report-run.png" }]
// }
//
// Exit status: 0 the browser ran (problems, if any, are in the JSON); 2 bad arguments;
// 3 Chromium could not be launched (the JSON has `launch_error`); 1 anything else.
// Network requests to anything but the upload page's own origin are aborted and listed
// (`blocked_requests`): the pages must work offline.

import { existsSync, readFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

const started = performance.now();
const result = {
  launched: false,
  launch_error: null,
  launch_log: null,
  error: null,
  chromium_version: null,
  timings_ms: { launch: null, upload_page_load: null, upload_to_answer: [], pages: {} },
  upload: null,
  pages: [],
};

function finish(code) {
  result.timings_ms.total = Math.round(performance.now() - started);
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code));
}

function ms(since) {
  return Math.round(performance.now() - since);
}

// An error's message without Playwright's colours and log banners.
function message(e) {
  const text = e && e.message ? e.message : String(e);
  return text.replace(/\x1b\[[0-9;]*m/g, "").split("\n=====")[0].trimEnd();
}

// A launch failure in a few lines: Playwright's first line and what Chromium printed itself
// (`[pid=N][err] ...`); the whole log is kept in `launch_log`.
function launchSummary(text) {
  const lines = text.split("\n");
  const own = lines
    .filter((l) => /\[pid=\d+\]\[(err|out)\]/.test(l))
    .map((l) => l.trim().replace(/^- /, ""));
  return [lines[0], ...new Set(own)].slice(0, 9).join("\n");
}

let spec;
try {
  const arg = process.argv[2];
  if (!arg) throw new Error("usage: node check.mjs SPEC.json");
  spec = JSON.parse(arg.trimStart().startsWith("{") ? arg : readFileSync(arg, "utf8"));
  if (!spec.chromium || !spec.out_dir) throw new Error("the spec needs `chromium` and `out_dir`");
} catch (e) {
  result.error = `bad spec: ${message(e)}`;
  finish(2);
}

const timeout = spec?.timeout_ms ?? 30000;
let browser = null;

// A last resort so that nothing hangs: the Rust side has its own, longer, limit.
const watchdog = setTimeout(async () => {
  result.error = `the whole check took over ${(4 * timeout) / 1000} s`;
  try { await browser?.close(); } catch { /* already gone */ }
  finish(1);
}, 4 * timeout);
watchdog.unref();

// Console errors, uncaught exceptions, failed and blocked requests of one page.
function watch(page, allowedOrigin) {
  const seen = { console_errors: [], page_errors: [], failed_requests: [], blocked_requests: [] };
  page.on("console", (m) => {
    if (m.type() === "error") {
      const at = m.location();
      seen.console_errors.push(at && at.url ? `${m.text()} (at ${at.url}:${at.lineNumber})` : m.text());
    }
  });
  page.on("pageerror", (e) => seen.page_errors.push(message(e)));
  page.on("requestfailed", (r) => {
    if (!seen.blocked_requests.includes(r.url())) {
      seen.failed_requests.push(`${r.url()}: ${r.failure()?.errorText ?? "failed"}`);
    }
  });
  return {
    seen,
    route: page.route(
      (url) => (url.protocol === "http:" || url.protocol === "https:") && url.origin !== allowedOrigin,
      (route) => {
        seen.blocked_requests.push(route.request().url());
        return route.abort("blockedbyclient");
      },
    ),
  };
}

// Runs `fn`, prefixing its error with `what`, so that a timeout says which wait it was.
async function step(what, fn) {
  try {
    return await fn();
  } catch (e) {
    throw new Error(`${what}: ${message(e)}`);
  }
}

// A full-page screenshot named `name` in the output folder, when a name is given; its path.
async function screenshot(page, name) {
  if (!name) return null;
  const path = join(spec.out_dir, name);
  await step("taking the screenshot", () => page.screenshot({ path, fullPage: true, timeout }));
  return path;
}

async function checkUpload(context, upload) {
  const origin = new URL(upload.url).origin;
  const page = await context.newPage();
  const { seen, route } = watch(page, origin);
  await route;
  const out = { ...seen, error: null, models: [], answers: [], screenshot: null };
  result.upload = out;
  try {
    let t = performance.now();
    await step(`opening ${upload.url}`, () => page.goto(upload.url, { waitUntil: "load", timeout }));
    // The page fetches the model list, then the chosen model's centroids, and draws them;
    // its status line's `data-state` says `ready` (Predict enabled) or `error` once done.
    await step("waiting for the model list and the model's map to load", () =>
      page.waitForFunction(
        () => ["ready", "error"].includes(document.querySelector("#status")?.dataset.state),
        null,
        { timeout },
      ),
    );
    result.timings_ms.upload_page_load = ms(t);
    const status = page.locator("#status");
    if ((await status.getAttribute("class")) === "error") {
      throw new Error(`the page shows an error before any upload: ${await status.textContent()}`);
    }
    out.models = await page.$$eval("#model option", (os) => os.map((o) => o.value));

    for (const location of upload.locations) {
      for (const [heading, file] of Object.entries(location.files)) {
        await step(`choosing ${file} for heading ${heading}`, () =>
          page.setInputFiles(`input[type=file][data-heading="${heading}"]`, file, { timeout }),
        );
      }
      t = performance.now();
      const response = page.waitForResponse((r) => r.url().includes("/predict-cardinal-images"), {
        timeout,
      });
      response.catch(() => {}); // awaited below; a timeout there is reported there
      await step("clicking Predict", () => page.click("button[type=submit]", { timeout }));
      const answered = await step(`waiting for the prediction request of ${location.uuid}`, () => response);
      // The submit handler sets `data-state` to `predicting` before it sends, and to `done`
      // (or `error`) once the answer is drawn.
      await step(`waiting for the page to show the answer for ${location.uuid}`, () =>
        page.waitForFunction(
          () => ["done", "error"].includes(document.querySelector("#status")?.dataset.state),
          null,
          { timeout },
        ),
      );
      const took = ms(t);
      result.timings_ms.upload_to_answer.push(took);
      const dom = await page.evaluate(() => ({
        status: document.querySelector("#status").textContent,
        status_class: document.querySelector("#status").className,
        state: document.querySelector("#status").dataset.state,
        shown_latitude: Number(document.querySelector("#status").dataset.latitude),
        shown_longitude: Number(document.querySelector("#status").dataset.longitude),
        answer_text: document.querySelector("#answer").textContent,
        marker_title: document.querySelector("#map circle.answer title")?.textContent ?? null,
        top_markers: document.querySelectorAll("#map circle.top").length,
      }));
      let answer = null;
      try {
        answer = JSON.parse(dom.answer_text);
      } catch {
        /* left null: the Rust side says what the page showed */
      }
      out.answers.push({
        uuid: location.uuid,
        http_status: answered.status(),
        ms: took,
        answer,
        ...dom,
      });
    }
    out.screenshot = await screenshot(page, upload.screenshot);
  } catch (e) {
    out.error = message(e);
  } finally {
    await page.close().catch(() => {});
  }
}

async function checkPage(context, spec_) {
  const page = await context.newPage();
  const { seen, route } = watch(page, null);
  await route;
  const url = pathToFileURL(resolve(spec_.path)).href;
  const out = {
    name: spec_.name,
    path: spec_.path,
    url,
    ...seen,
    error: null,
    title: null,
    h1: [],
    broken_images: [],
    dead_links: [],
    screenshot: null,
    ms: null,
  };
  result.pages.push(out);
  try {
    const t = performance.now();
    const response = await step(`opening ${url}`, () => page.goto(url, { waitUntil: "load", timeout }));
    if (response && !response.ok()) throw new Error(`opening ${url}: status ${response.status()}`);
    // Two frames after `load`, so that what the page draws in its load handlers is drawn.
    await step("waiting for the page to render", () =>
      page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))),
    );
    out.ms = ms(t);
    result.timings_ms.pages[spec_.name] = out.ms;
    Object.assign(
      out,
      await page.evaluate(() => ({
        title: document.title,
        h1: [...document.querySelectorAll("h1")].map((h) => h.textContent.trim()),
        broken_images: [...document.images]
          .filter((i) => i.complete && i.naturalWidth === 0)
          .map((i) => i.currentSrc || i.src),
      })),
    );
    // Links to other files (a sweep report's runs) must lead somewhere, and so must links
    // to anchors of the page itself; links to the web are not followed.
    const links = await page.$$eval("a[href]", (as) =>
      as.map((a) => ({ href: a.getAttribute("href"), url: a.href })),
    );
    for (const { href, url: target } of links) {
      const at = new URL(target);
      const here = at.href.split("#")[0] === url.split("#")[0];
      if (here && at.hash.length > 1) {
        const id = decodeURIComponent(at.hash.slice(1));
        if (!(await page.evaluate((id) => !!document.getElementById(id), id))) {
          out.dead_links.push(`${href}: no element with that id`);
        }
      } else if (!here && at.protocol === "file:" && !existsSync(fileURLToPath(at.href.split("#")[0]))) {
        out.dead_links.push(`${href}: ${fileURLToPath(at.href.split("#")[0])} does not exist`);
      }
    }
    out.screenshot = await screenshot(page, spec_.screenshot);
  } catch (e) {
    out.error = message(e);
  } finally {
    await page.close().catch(() => {});
  }
}

async function main() {
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    result.error = `cannot load playwright-core (run \`npm ci\` in tests/browser): ${message(e)}`;
    return finish(1);
  }
  mkdirSync(spec.out_dir, { recursive: true });

  const t = performance.now();
  try {
    // A plain launch: Playwright gives the browser a fresh temporary profile
    // (--user-data-dir) and removes it on close.
    browser = await chromium.launch({
      executablePath: spec.chromium,
      headless: true,
      timeout,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  } catch (e) {
    result.launch_log = message(e);
    result.launch_error = launchSummary(result.launch_log);
    return finish(3);
  }
  result.launched = true;
  result.timings_ms.launch = ms(t);
  result.chromium_version = browser.version();

  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(timeout);
    if (spec.upload) await checkUpload(context, spec.upload);
    for (const p of spec.pages ?? []) await checkPage(context, p);
    await context.close();
  } catch (e) {
    result.error = message(e);
  } finally {
    await browser.close().catch(() => {});
  }
  finish(result.error ? 1 : 0);
}

if (spec) {
  main().catch((e) => {
    result.error = message(e);
    finish(1);
  });
}
