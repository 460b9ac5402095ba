// The hostdev Cockpit page in headless Chromium (playwright-core), served by cockpit-ws over the private bus of
// tests/bus/harness.sh with hostdevd-fake and the real polkitd. Run by serve.sh:
//   node page_test.mjs SCENARIO USER URL
// Scenarios: passthrough (hdadmin, allowed by the group rule), vgpu (hdadmin), unprivileged (hdtest: refused),
// restart (hostdevd-fake --idle-exit 1: it leaves the bus while the page is open), unavailable (it cannot start).
// Screenshots go to $HOSTDEV_COCKPIT_ARTIFACTS; the figures are printed as "FIGURE name: ... ms".
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const [scenario, user, url] = process.argv.slice(2);
const artifacts = process.env.HOSTDEV_COCKPIT_ARTIFACTS;
const require = createRequire(path.join(process.env.HOSTDEV_COCKPIT_CACHE, "package.json"));
const { chromium } = require("playwright-core");

const BUS = "org.hostdev.Passthrough1";
const ROOT = "/org/hostdev/Passthrough1";
const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 420, height: 860 };
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"];

class Failure extends Error {}

function check(cond, msg) {
    if (!cond)
        throw new Failure(msg);
}

let currentStep = "start";
const started = Date.now();
function step(name) {
    currentStep = name;
    console.log(`[${scenario} ${((Date.now() - started) / 1000).toFixed(1)} s] ${name}`);
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const figures = [];
function figure(name, values) {
    const rounded = values.map(v => Math.round(v));
    figures.push(`FIGURE ${name}: median ${Math.round(median(values))} ms (runs: ${rounded.join(", ")})`);
}

// Root's calls to hostdevd, as another client would make them (the page must follow them by signal).
const execFileP = promisify(execFile);
async function busctl(...args) {
    const { stdout } = await execFileP("busctl", ["--system", ...args]);
    return stdout.trim();
}

// ---------------------------------------------------------------------------------------------------------------
// Page helpers

async function ready(page) {
    await page.waitForSelector("body[data-state=ready]", { timeout: 30000 });
    return page.evaluate(() => performance.getEntriesByName("hostdev-populated")[0].startTime);
}

async function show(page, view) {
    await page.click(`#tab-${view}`);
    await page.waitForSelector(`#view-${view}:not([hidden])`);
}

async function shot(page, name, fullPage = false) {
    await page.screenshot({ path: path.join(artifacts, `${scenario}-${name}.png`), fullPage });
}

// The row of table whose header cell starts with text as a whole word ("gpu0" is not "gpu0-audio").
function rowOf(page, table, text) {
    const word = new RegExp("^" + text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?![\\w.-])");
    return page.locator(`#${table} tbody tr`).filter({ has: page.locator("th", { hasText: word }) });
}

async function waitText(page, selector, text, { absent = false, timeout = 20000 } = {}) {
    await page.waitForFunction(([sel, want, gone]) => {
        const hit = [...document.querySelectorAll(sel)].some(e => e.textContent.includes(want));
        return gone ? !hit : hit;
    }, [selector, text, absent], { timeout });
}

// Waits until the vGPU profile's Available cell says n.
async function waitAvailable(page, profile, n) {
    await page.waitForFunction(([name, want]) => {
        const row = [...document.querySelectorAll("#profiles-table tbody tr")]
                .find(r => r.querySelector("th").textContent === name);
        return row && Number(row.querySelector("td[data-label=Available]").textContent) === want;
    }, [profile, n]);
}

async function dialogClosed(page, id) {
    await page.waitForFunction(dialog => !document.getElementById(dialog).open, id);
}

async function cellText(page, table, rowText, label) {
    const row = rowOf(page, table, rowText);
    return (await row.locator(`td[data-label="${label}"]`).textContent()).trim();
}

// Clicks, then waits for selector (with text) to appear (or go), timed in the page from the click event to the
// DOM change: what a person sees between pressing the button and the row changing.
async function timedClick(page, locator, selector, text, absent = false) {
    await page.evaluate(([sel, want, gone]) => {
        const t = window.hostdevTiming = { click: null, done: null };
        const met = () => {
            const hit = [...document.querySelectorAll(sel)].some(e => e.textContent.includes(want));
            return gone ? !hit : hit;
        };
        document.addEventListener("click", () => { if (t.click === null) t.click = performance.now() },
                                  { capture: true, once: true });
        const observer = new MutationObserver(() => {
            if (t.click !== null && t.done === null && met()) {
                t.done = performance.now();
                observer.disconnect();
            }
        });
        observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    }, [selector, text, absent]);
    await locator.click();
    await page.waitForFunction(() => window.hostdevTiming.done !== null, null, { timeout: 20000 });
    return page.evaluate(() => window.hostdevTiming.done - window.hostdevTiming.click);
}

// The page was not reloaded since mark(): the change came by signal, not by a new page.
async function mark(page) {
    await page.evaluate(() => { window.hostdevNotReloaded = true });
}
async function checkNotReloaded(page) {
    check(await page.evaluate(() => window.hostdevNotReloaded === true), "the page was reloaded");
}

// Accessibility basics of the visible page: a name for every control, a label for every field, a name for every
// table, unique ids; and no horizontal scrolling.
async function audit(page, where) {
    const problems = await page.evaluate(() => {
        const out = [];
        const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
        const named = el => (el.getAttribute("aria-label") || "").trim() ||
            (el.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean)
                    .map(id => document.getElementById(id)?.textContent || "").join("").trim() ||
            el.textContent.trim();
        for (const el of document.querySelectorAll("button, a[href], [role=tab]")) {
            if (visible(el) && !named(el))
                out.push("control without a name: " + el.outerHTML.slice(0, 80));
        }
        for (const el of document.querySelectorAll("input, select, textarea")) {
            if (!visible(el))
                continue;
            if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
                out.push("field without a label: " + el.outerHTML.slice(0, 80));
        }
        for (const table of document.querySelectorAll("table")) {
            if (visible(table) && !table.caption && !table.getAttribute("aria-labelledby") && !table.getAttribute("aria-label"))
                out.push("table without a name: #" + table.id);
        }
        const ids = new Map();
        for (const el of document.querySelectorAll("[id]"))
            ids.set(el.id, (ids.get(el.id) || 0) + 1);
        for (const [id, n] of ids)
            if (n > 1)
                out.push("id used " + n + " times: " + id);
        if (document.documentElement.scrollWidth > window.innerWidth + 1)
            out.push(`scrolls sideways: ${document.documentElement.scrollWidth} px in ${window.innerWidth}`);
        return out;
    });
    check(problems.length === 0, `${where}: ${problems.join("; ")}`);
}

async function narrow(page, views) {
    await page.setViewportSize(NARROW);
    for (const v of views) {
        await show(page, v);
        await audit(page, `${v} at ${NARROW.width} px`);
        await shot(page, `${v}-narrow`, true);
    }
    await page.setViewportSize(WIDE);
}

// Method calls to hostdevd's objects while the page sits idle (dbus-monitor as root, on the private bus).
async function callsWhileIdle(ms) {
    const monitor = spawn("dbus-monitor", ["--system", `type='method_call',path_namespace='${ROOT}'`]);
    let out = "";
    monitor.stdout.on("data", d => { out += d });
    const started = Date.now();
    while (!out && Date.now() - started < 3000)
        await sleep(20);
    await sleep(ms);
    monitor.kill();
    return (out.match(/^method call /gm) || []).length;
}

async function load(page, reloads) {
    const times = [];
    const response = await page.goto(url);
    times.push(await ready(page));
    for (let i = 0; i < reloads; i++) {
        await page.reload();
        times.push(await ready(page));
    }
    figure("page load to populated tables", times);
    return response;
}

async function register(page, address, name) {
    await rowOf(page, "candidates-table", address).getByRole("button", { name: `Register ${address}` }).click();
    await page.waitForSelector("#register-dialog[open]");
    await page.fill("#register-name", name);
    return timedClick(page, page.locator("#register-dialog button[type=submit]"), "#devices-table tbody tr", name);
}

async function unregister(page, name) {
    await rowOf(page, "devices-table", name).getByRole("button", { name: `Unregister ${name}` }).click();
    await page.waitForSelector("#confirm-dialog[open]");
    const ms = await timedClick(page, page.locator("#confirm-ok"), "#devices-table tbody th", name, true);
    await dialogClosed(page, "confirm-dialog");
    return ms;
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

async function passthrough(page, context) {
    step("load: host checks and device tables populated");
    const response = await load(page, 4);
    const csp = response.headers()["content-security-policy"] || "";
    check(csp.includes("default-src 'self'") && !csp.includes("unsafe-inline"),
          "the page is not under Cockpit's default Content-Security-Policy: " + csp);
    await mark(page);

    step("manifest: listed under Tools");
    const manifests = await (await page.request.get(new URL("../manifests.json", url).href)).json();
    const tool = manifests.hostdev && manifests.hostdev.tools && manifests.hostdev.tools.index;
    check(tool && tool.label === "Device passthrough" && tool.path === "index.html",
          "manifests.json has no hostdev tool: " + JSON.stringify(manifests.hostdev));

    step("host view: readiness checks and each problem's hint");
    await show(page, "host");
    check((await page.locator("#host-checks tbody tr").count()) === 5, "five readiness checks");
    check((await cellText(page, "host-checks", "IOMMU", "Result")) === "On", "IOMMU on");
    check((await cellText(page, "host-checks", "Hugepages", "Result")) === "None reserved", "no hugepages");
    const problem = page.locator("#host-problems li", { hasText: "no hugepages are reserved" });
    check((await problem.count()) === 1, "the hugepages problem is listed");
    check((await problem.textContent()).includes("How to fix: reserve them with sysctl vm.nr_hugepages"),
          "the hugepages problem has its hint");
    await audit(page, "host");
    await shot(page, "host");

    step("no polling: no calls to hostdevd while the page is idle");
    const idleCalls = await callsWhileIdle(4000);
    check(idleCalls === 0, `${idleCalls} method calls to hostdevd in 4 s of an idle page`);

    step("devices view: GPU candidates, then every function");
    await show(page, "devices");
    await rowOf(page, "candidates-table", "0000:01:00.0").waitFor();
    check((await rowOf(page, "candidates-table", "0000:02:00.0").count()) === 0, "the NIC is no GPU candidate");
    check(await page.locator("#devices-empty").isVisible(), "no registered devices yet");
    await page.getByLabel("Show every PCI function, not only GPUs").check();
    await rowOf(page, "candidates-table", "0000:02:00.0").waitFor();
    await rowOf(page, "candidates-table", "0000:03:00.0").waitFor();
    check((await cellText(page, "candidates-table", "0000:02:00.0", "Driver")) === "igb", "the NIC on igb");
    check((await rowOf(page, "candidates-table", "0000:00:01.0").getByRole("button").count()) === 0,
          "a bridge offers no Register (hostdevd refuses bridges)");
    await audit(page, "devices");

    step("register gpu0: the row appears by signal (three times, unregistering between)");
    const registerTimes = [];
    const unregisterTimes = [];
    for (let i = 0; i < 3; i++) {
        registerTimes.push(await register(page, "0000:01:00.0", "gpu0"));
        // The row may come before the reply (Cockpit delivers signals first): the dialog closes on the reply.
        await dialogClosed(page, "register-dialog");
        if (i < 2)
            unregisterTimes.push(await unregister(page, "gpu0"));
    }
    figure("click Register to the registered row", registerTimes);
    figure("click Unregister to the row gone", unregisterTimes);
    await checkNotReloaded(page);
    check((await cellText(page, "devices-table", "gpu0", "Driver")) === "nvidia", "gpu0's driver");
    check((await cellText(page, "devices-table", "gpu0", "IOMMU group")) === "1", "gpu0's IOMMU group");
    check((await cellText(page, "devices-table", "gpu0", "Binding")) === "Host driver", "gpu0 on its host driver");
    check((await cellText(page, "devices-table", "gpu0", "Attached to")) === "Free", "gpu0 free");
    await waitText(page, "#candidates-table tbody tr", "gpu0");

    step("register the audio function with the keyboard only");
    await page.focus("#tab-devices");
    let reached = false;
    for (let i = 0; i < 80 && !reached; i++) {
        await page.keyboard.press("Tab");
        reached = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") === "Register 0000:01:00.1");
    }
    check(reached, "Tab reaches the Register button of 0000:01:00.1");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#register-dialog[open]");
    check(await page.evaluate(() => document.activeElement?.id === "register-name"), "the name field has the focus");
    await page.keyboard.type("gpu0-audio");
    await page.keyboard.press("Enter");
    await rowOf(page, "devices-table", "gpu0-audio").waitFor();
    await dialogClosed(page, "register-dialog");
    await page.waitForFunction(() => document.activeElement?.tagName === "H2" &&
                                     document.activeElement.textContent === "Registered devices");

    step("another client registers nic0: the page follows");
    await busctl("call", BUS, ROOT, BUS + ".Devices", "Register", "ssa{sv}", "nic0", "0000:02:00.0", "0");
    await rowOf(page, "devices-table", "nic0").waitFor();
    await checkNotReloaded(page);

    step("bind gpu0 while its audio function is on snd_hda_intel: the daemon's error in the page");
    await rowOf(page, "devices-table", "gpu0").getByRole("button", { name: "Bind gpu0 to vfio-pci" }).first().click();
    const conflict = page.locator("#alerts .alert", { hasText: "IommuGroupConflict" });
    await conflict.waitFor();
    check((await conflict.textContent()).includes("org.hostdev.Passthrough1.Error.IommuGroupConflict"),
          "the full D-Bus error name is shown");
    await shot(page, "bind-conflict");
    await conflict.getByRole("button", { name: /^Dismiss/ }).click();

    step("bind nic0 to vfio-pci, then give it back: Binding follows PropertiesChanged");
    const nicKey = await rowOf(page, "devices-table", "nic0").getAttribute("data-key");
    const nicCell = label => `#devices-table tr[data-key="${nicKey}"] td[data-label="${label}"]`;
    const bindTime = await timedClick(page, rowOf(page, "devices-table", "nic0").getByRole("button", { name: "Bind nic0 to vfio-pci" }),
                                      nicCell("Binding"), "vfio-pci");
    check((await cellText(page, "devices-table", "nic0", "Driver")) === "vfio-pci", "nic0's driver is vfio-pci");
    const restoreTime = await timedClick(page,
                                         rowOf(page, "devices-table", "nic0").getByRole("button", { name: "Give nic0 back to its host driver" }),
                                         nicCell("Driver"), "igb");
    figure("click Bind to vfio-pci, and Give back, to the updated row", [bindTime, restoreTime]);
    check((await cellText(page, "devices-table", "nic0", "Binding")) === "Host driver", "nic0 back on igb");

    step("create an instance with gpu0 and its audio function");
    await show(page, "instances");
    check(await page.locator("#instances-empty").isVisible(), "no instances yet");
    await page.click("#create-instance");
    await page.waitForSelector("#create-dialog[open]");
    await page.fill("#create-name", "vm0");
    await page.getByLabel("gpu0 0000:01:00.0").check();
    await page.getByLabel("gpu0-audio 0000:01:00.1").check();
    await audit(page, "create dialog");
    await shot(page, "create-dialog");
    await timedClick(page, page.locator("#create-dialog button[type=submit]"), "#instances-table tbody tr", "vm0");
    await dialogClosed(page, "create-dialog");
    check((await cellText(page, "instances-table", "vm0", "Owner")) === "hdadmin (4712)", "vm0's owner");
    check((await cellText(page, "instances-table", "vm0", "Devices")) === "gpu0, gpu0-audio", "vm0's devices");
    check((await cellText(page, "instances-table", "vm0", "State")).includes("Ready"), "vm0 ready");
    await audit(page, "instances");
    await shot(page, "instances");
    await show(page, "devices");
    await waitText(page, "#devices-table td[data-label='Attached to']", "vm0");
    check((await cellText(page, "devices-table", "gpu0", "Binding")) === "vfio-pci: ready for a VM", "Create bound gpu0");
    check(await rowOf(page, "devices-table", "gpu0-audio").getByRole("button", { name: "Unregister gpu0-audio" }).isDisabled(),
          "an attached device cannot be unregistered");

    step("instance detail: device paths, QEMU and Cloud Hypervisor arguments, copyable");
    await show(page, "instances");
    await page.getByRole("link", { name: "Details of vm0" }).click();
    await page.waitForSelector("#view-instance:not([hidden])");
    await waitText(page, "#detail-paths", "/sys/bus/pci/devices/0000:01:00.0/");
    const qemu = (await page.locator("#qemu-args").textContent()).trim();
    check(qemu.includes("-device vfio-pci,host=0000:01:00.0") && qemu.includes("-device vfio-pci,host=0000:01:00.1"),
          "QEMU arguments: " + qemu);
    const ch = (await page.locator("#ch-args").textContent()).trim();
    check(ch.includes("--device path=/sys/bus/pci/devices/0000:01:00.0/"), "Cloud Hypervisor arguments: " + ch);
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
    await page.getByRole("button", { name: "Copy QEMU arguments" }).click();
    await waitText(page, "#view-instance .copy", "Copied");
    check((await page.evaluate(() => navigator.clipboard.readText())) === qemu, "the clipboard holds the QEMU arguments");
    await audit(page, "instance detail");
    await shot(page, "instance-detail");

    step("delete vm0 from its detail view: back to the list, devices free");
    await page.click("#detail-delete");
    await page.waitForSelector("#confirm-dialog[open]");
    await page.click("#confirm-ok");
    await page.waitForSelector("#view-instances:not([hidden])");
    await waitText(page, "#instances-table tbody", "vm0", { absent: true });
    check(await page.locator("#instances-empty").isVisible(), "no instances again");
    await show(page, "devices");
    await waitText(page, "#devices-table td[data-label='Attached to']", "vm0", { absent: true });
    await page.waitForFunction(() => [...document.querySelectorAll("#devices-table td[data-label=Driver]")]
            .map(td => td.textContent).join(" ") === "nvidia snd_hda_intel igb");
    await shot(page, "devices");

    step("keyboard: arrows move between the tabs");
    await page.focus("#tab-devices");
    await page.keyboard.press("ArrowRight");
    // The view follows through Cockpit's location (an event, a moment later); the focus moves at once.
    check(await page.evaluate(() => document.activeElement?.id === "tab-vgpu"), "ArrowRight moves to vGPU profiles");
    await page.waitForSelector("#view-vgpu:not([hidden])", { timeout: 5000 });
    await page.keyboard.press("Home");
    check(await page.evaluate(() => document.activeElement?.id === "tab-host"), "Home moves to Host");
    await page.waitForSelector("#view-host:not([hidden])", { timeout: 5000 });

    step("a narrow window");
    await narrow(page, ["host", "devices", "instances"]);
}

async function vgpu(page) {
    step("load");
    await load(page, 2);
    await mark(page);

    step("vGPU view: profiles and used slots");
    await show(page, "vgpu");
    const profile = "NVIDIA L40S-1Q";
    const available = async name => Number(await cellText(page, "profiles-table", name, "Available"));
    await rowOf(page, "profiles-table", profile).waitFor();
    check((await cellText(page, "profiles-table", profile, "Framebuffer")) === "1 GiB", "1Q has 1 GiB");
    const before = await available(profile);
    check(before > 0, "1Q available");
    const slots = (await page.locator("#slots-text").textContent()).trim();
    const [, used0, total] = slots.match(/^(\d+) of (\d+) slots used$/) || [];
    check(total !== undefined && Number(total) > 0, "slots text: " + slots);
    check(await page.locator("#slots-bar").evaluate((bar, u) => bar.value === u, Number(used0)), "the bar's value");
    const perGpu = async () => page.locator("#gpu-slots li .slots-text").allTextContents();
    check(JSON.stringify(await perGpu()) === JSON.stringify(["0 of 32 slots used", "0 of 32 slots used"]),
          "a bar per GPU, each with its 32 VFs: " + JSON.stringify(await perGpu()));
    await audit(page, "vgpu");
    await shot(page, "vgpu");

    step("create vm1 with a vGPU: the row appears and the profile's availability drops by one");
    await show(page, "instances");
    await page.click("#create-instance");
    await page.waitForSelector("#create-dialog[open]");
    await page.fill("#create-name", "vm1");
    await page.selectOption("#create-profile", profile);
    const createTime = await timedClick(page, page.locator("#create-dialog button[type=submit]"),
                                        "#instances-table tbody tr", "vm1");
    figure("click Create to the instance row", [createTime]);
    await dialogClosed(page, "create-dialog");
    check((await cellText(page, "instances-table", "vm1", "vGPU")) === profile, "vm1's vGPU");
    check((await cellText(page, "instances-table", "vm1", "Owner")) === "hdadmin (4712)", "vm1's owner");
    await shot(page, "instances");
    await show(page, "vgpu");
    await waitAvailable(page, profile, before - 1);
    check((await page.locator("#slots-text").textContent()).trim() === `${Number(used0) + 1} of ${total} slots used`,
          "one more slot used");
    check((await perGpu()).filter(t => t === "1 of 32 slots used").length === 1, "one GPU has the new vGPU");
    await checkNotReloaded(page);
    await shot(page, "vgpu-in-use");

    step("instance detail: the mdev's path and arguments");
    await show(page, "instances");
    await page.getByRole("link", { name: "Details of vm1" }).click();
    await waitText(page, "#detail-paths", "/sys/bus/mdev/devices/");
    check((await page.locator("#qemu-args").textContent()).includes("vfio-pci,sysfsdev=/sys/bus/mdev/devices/"),
          "QEMU arguments for the mdev");
    await audit(page, "vgpu instance detail");
    await shot(page, "instance-detail");

    step("delete vm1: row gone, availability back");
    await show(page, "instances");
    await rowOf(page, "instances-table", "vm1").getByRole("button", { name: "Delete instance vm1" }).click();
    await page.waitForSelector("#confirm-dialog[open]");
    const deleteTime = await timedClick(page, page.locator("#confirm-ok"), "#instances-table tbody", "vm1", true);
    figure("click Delete to the instance row gone", [deleteTime]);
    await dialogClosed(page, "confirm-dialog");
    await show(page, "vgpu");
    await waitAvailable(page, profile, before);

    step("another client creates and deletes vm2: MdevCreated and MdevDestroyed update the page");
    const profile2 = "NVIDIA L40S-2Q";
    const before2 = await available(profile2);
    await busctl("call", BUS, ROOT, BUS + ".Instances", "Create", "sa{sv}", "vm2", "1", "gpu_profile", "s", profile2);
    await show(page, "instances");
    await rowOf(page, "instances-table", "vm2").waitFor();
    check((await cellText(page, "instances-table", "vm2", "Owner")) === "root (0)", "vm2 belongs to root");
    await show(page, "vgpu");
    await waitAvailable(page, profile2, before2 - 1);
    await busctl("call", BUS, ROOT, BUS + ".Instances", "Delete", "sa{sv}", "vm2", "0");
    await show(page, "instances");
    await waitText(page, "#instances-table tbody", "vm2", { absent: true });
    await checkNotReloaded(page);

    step("a narrow window");
    await narrow(page, ["vgpu", "instances"]);
}

// The bridge as root, as with Cockpit's administrative access: changes go through without asking polkit.
async function admin(page) {
    step("load as root");
    await load(page, 0);
    await mark(page);
    check(!(await page.locator("#access-note").textContent()).includes("Limited access"),
          "no limited-access note for root");

    step("register, bind, give back and unregister nic0 as root");
    await show(page, "devices");
    await page.getByLabel("Show every PCI function, not only GPUs").check();
    await rowOf(page, "candidates-table", "0000:02:00.0").waitFor();
    await register(page, "0000:02:00.0", "nic0");
    await dialogClosed(page, "register-dialog");
    const nicKey = await rowOf(page, "devices-table", "nic0").getAttribute("data-key");
    const nicCell = label => `#devices-table tr[data-key="${nicKey}"] td[data-label="${label}"]`;
    await timedClick(page, rowOf(page, "devices-table", "nic0").getByRole("button", { name: "Bind nic0 to vfio-pci" }),
                     nicCell("Binding"), "vfio-pci");
    await timedClick(page,
                     rowOf(page, "devices-table", "nic0").getByRole("button", { name: "Give nic0 back to its host driver" }),
                     nicCell("Driver"), "igb");
    await unregister(page, "nic0");
    check((await page.locator("#alerts .alert").count()) === 0, "no error on the way");
    await shot(page, "devices");
}

async function unprivileged(page) {
    step("load: reads work for a user polkit does not allow");
    await load(page, 0);
    await mark(page);
    await show(page, "host");
    check((await page.locator("#host-checks tbody tr").count()) === 5, "readiness checks for hdtest");
    check((await page.locator("#access-note").textContent()).includes("Limited access: hostdevd asks polkit whether hdtest"),
          "the page says that access is limited");

    step("register as hdtest: NotAuthorized and hostdevd's message in the dialog");
    await show(page, "devices");
    await rowOf(page, "candidates-table", "0000:01:00.0").waitFor();
    await rowOf(page, "candidates-table", "0000:01:00.0").getByRole("button", { name: "Register 0000:01:00.0" }).click();
    await page.waitForSelector("#register-dialog[open]");
    await page.fill("#register-name", "gpu0");
    await page.click("#register-dialog button[type=submit]");
    const error = page.locator("#register-dialog .dialog-error .alert");
    await error.waitFor();
    const text = await error.textContent();
    check(text.includes("NotAuthorized") && text.includes("org.hostdev.Passthrough1.Error.NotAuthorized"),
          "the error name is shown: " + text);
    check(text.includes("uid 4711 is not authorized for org.hostdev.passthrough1.manage-devices"),
          "hostdevd's message is shown: " + text);
    check(!text.includes("pass the option interactive=true"), "the page passed interactive=true: " + text);
    await audit(page, "refused register dialog");
    await shot(page, "not-authorized");
    await page.click("#register-dialog [data-close]");
    check(await page.locator("#devices-empty").isVisible(), "nothing was registered");

    step("root registers gpu0: hdtest sees it come");
    await busctl("call", BUS, ROOT, BUS + ".Devices", "Register", "ssa{sv}", "gpu0", "0000:01:00.0", "0");
    await rowOf(page, "devices-table", "gpu0").waitFor();
    await checkNotReloaded(page);

    step("bind as hdtest: NotAuthorized at the top of the page");
    await rowOf(page, "devices-table", "gpu0").getByRole("button", { name: "Bind gpu0 to vfio-pci" }).click();
    const alert = page.locator("#alerts .alert", { hasText: "Could not bind gpu0 to vfio-pci" });
    await alert.waitFor();
    check((await alert.textContent()).includes("NotAuthorized: uid 4711 is not authorized"), "the bind was refused");
    check((await cellText(page, "devices-table", "gpu0", "Binding")) === "Host driver", "gpu0 stays on nvidia");
    await shot(page, "bind-not-authorized");

    step("unregister as hdtest: NotAuthorized in the confirmation");
    await rowOf(page, "devices-table", "gpu0").getByRole("button", { name: "Unregister gpu0" }).click();
    await page.waitForSelector("#confirm-dialog[open]");
    await page.click("#confirm-ok");
    await page.locator("#confirm-dialog .alert", { hasText: "NotAuthorized" }).waitFor();
    await page.click("#confirm-dialog [data-close]");
    check((await rowOf(page, "devices-table", "gpu0").count()) === 1, "gpu0 is still registered");
}

// hostdevd-fake --idle-exit 1: hostdevd leaves the bus while the page is open, and another client's call starts
// it again. The page keeps what it showed, says that hostdevd stopped, and follows the new daemon.
async function restart(page) {
    const servings = () => (fs.readFileSync(path.join(process.env.HOSTDEV_TEST_DIR, "daemon.log"), "utf8")
            .match(/serving org\.hostdev\.Passthrough1/g) || []).length;
    step("load, then hostdevd exits when idle: the page keeps what it showed");
    await busctl("call", BUS, ROOT, BUS + ".Devices", "Register", "ssa{sv}", "gpu0", "0000:01:00.0", "0");
    await load(page, 0);
    await mark(page);
    await show(page, "devices");
    await rowOf(page, "devices-table", "gpu0").waitFor();
    await waitText(page, "#connection", "hostdevd is stopped", { timeout: 15000 });
    check(servings() === 1, "hostdevd started once so far");
    check((await page.locator("#devices-table tbody tr").count()) === 1, "the registered device stays listed");
    check((await page.locator("#candidates-table tbody tr").count()) === 2, "the candidates stay listed");
    await shot(page, "stopped");

    step("another client starts it again and registers audio0: the page follows the new hostdevd");
    await busctl("call", BUS, ROOT, BUS + ".Devices", "Register", "ssa{sv}", "audio0", "0000:01:00.1", "0");
    await waitText(page, "#connection", "live", { timeout: 15000 });
    await rowOf(page, "devices-table", "audio0").waitFor();
    await waitText(page, "#candidates-table tbody tr", "audio0");
    check(servings() === 2, "hostdevd was started again");
    check((await page.locator("#devices-table tbody tr").count()) === 2, "gpu0 and audio0");

    step("an action while hostdevd is stopped starts it");
    await waitText(page, "#connection", "hostdevd is stopped", { timeout: 15000 });
    await rowOf(page, "devices-table", "audio0").getByRole("button", { name: "Unregister audio0" }).click();
    await page.waitForSelector("#confirm-dialog[open]");
    await page.click("#confirm-ok");
    await waitText(page, "#devices-table tbody", "audio0", { absent: true });
    check(servings() === 3, "the page's call started hostdevd");
    await checkNotReloaded(page);
}

// hostdevd-fake with an option it does not know: bus activation fails. The page says so once, plainly.
async function unavailable(page) {
    step("load with a hostdevd that cannot start");
    await page.goto(url);
    await page.waitForSelector("body[data-state=failed]", { timeout: 30000 });
    const alerts = page.locator("#alerts .alert");
    check((await alerts.count()) === 1, "one alert, not one per read: " + (await alerts.allTextContents()).join(" | "));
    const text = await alerts.textContent();
    check(text.includes("No connection to hostdevd") && text.includes("hostdevd is not installed, or could not be started"),
          "the alert says what is wrong: " + text);
    check((await page.locator("#connection").textContent()) === "Not connected to hostdevd", "the status");
    check((await page.locator(".view .alert").count()) === 0, "the views repeat nothing");
    await audit(page, "no hostdevd");
    await shot(page, "no-hostdevd");
    step("Try again reloads the page");
    await mark(page);
    await alerts.getByRole("button", { name: "Try again" }).click();
    await page.waitForSelector("body[data-state=failed]", { timeout: 30000 });
    check(await page.evaluate(() => window.hostdevNotReloaded === undefined), "the page was loaded again");
}

// NVIDIA's vendor-specific VFIO framework (no mdev bus): the mode says so, a bar per GPU with its VFs, and a
// vGPU instance is ready with its VF and the VM's UUID (QEMU's -uuid).
async function vendorVgpu(page) {
    step("load");
    await load(page, 2);
    await mark(page);
    step("host view names the framework");
    await waitText(page, "#view-host", "NVIDIA vendor-specific VFIO");
    step("vGPU view: a bar per GPU with its 8 VFs");
    await show(page, "vgpu");
    const profile = "NVIDIA L40S-4Q";
    await rowOf(page, "profiles-table", profile).waitFor();
    check((await cellText(page, "profiles-table", profile, "Type")) === "1150", "the type id");
    check((await cellText(page, "profiles-table", profile, "Available")) === "16", "free VFs listing it");
    const perGpu = async () => page.locator("#gpu-slots li .slots-text").allTextContents();
    check(JSON.stringify(await perGpu()) === JSON.stringify(["0 of 8 slots used", "0 of 8 slots used"]),
          "a bar per GPU: " + JSON.stringify(await perGpu()));
    await audit(page, "vendor vgpu");
    await shot(page, "vendor-vgpu");
    step("create vm1 with L40S-4Q: ready, on a VF, with the VM's UUID");
    await show(page, "instances");
    await page.click("#create-instance");
    await page.waitForSelector("#create-dialog[open]");
    await page.fill("#create-name", "vm1");
    await page.selectOption("#create-profile", profile);
    await page.click("#create-dialog button[type=submit]");
    await rowOf(page, "instances-table", "vm1").waitFor();
    await dialogClosed(page, "create-dialog");
    check((await cellText(page, "instances-table", "vm1", "State")).includes("Ready"), "a vendor vGPU is ready");
    await page.getByRole("link", { name: "Details of vm1" }).click();
    await waitText(page, "#detail-paths", "/sys/bus/pci/devices/");
    const qemu = await page.locator("#qemu-args").textContent();
    check(/-device vfio-pci,host=0000:a2:00\.4 -uuid [0-9a-f-]{36}/.test(qemu), "QEMU arguments: " + qemu);
    check((await page.locator("#detail-facts").textContent()).includes("0000:a2:00.4"), "the VF in the facts");
    await audit(page, "vendor vgpu instance detail");
    await show(page, "vgpu");
    await page.waitForFunction(() => [...document.querySelectorAll("#gpu-slots li")].some(li =>
        li.textContent.includes("1 of 8 slots used") && li.textContent.includes("4 GiB framebuffer in use")));
    await shot(page, "vendor-vgpu-in-use");
}

const scenarios = { passthrough, vgpu, "vendor-vgpu": vendorVgpu, unprivileged, admin, restart, unavailable };

// ---------------------------------------------------------------------------------------------------------------

async function main() {
    check(scenarios[scenario], "unknown scenario " + scenario);
    fs.mkdirSync(artifacts, { recursive: true });
    for (const old of fs.readdirSync(artifacts))
        if (old.startsWith(scenario + "-") && old.endsWith(".png"))
            fs.rmSync(path.join(artifacts, old));
    const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), "hostdev-chromium-"));
    const context = await chromium.launchPersistentContext(profileDir, {
        executablePath: "/usr/bin/chromium",
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: WIDE,
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(20000);
    const consoleErrors = [];
    page.on("console", msg => {
        if (msg.type() === "error")
            consoleErrors.push(msg.text());
    });
    page.on("pageerror", err => consoleErrors.push("uncaught: " + err.message));
    let failed = null;
    try {
        await scenarios[scenario](page, context);
        step("no console errors");
        check(consoleErrors.length === 0, "console errors: " + consoleErrors.join(" | "));
    } catch (e) {
        failed = e;
        await page.screenshot({ path: path.join(artifacts, `${scenario}-FAILED.png`), fullPage: true }).catch(() => {});
        const alerts = await page.locator(".alert").allTextContents().catch(() => []);
        if (alerts.length)
            console.log("alerts in the page:", alerts.join(" | "));
        if (consoleErrors.length)
            console.log("console errors:", consoleErrors.join(" | "));
    } finally {
        await context.close();
        fs.rmSync(profileDir, { recursive: true, force: true });
    }
    for (const f of figures)
        console.log(f);
    if (failed) {
        console.log(`FAIL [${scenario}] at "${currentStep}" (as ${user}): ${failed.message}`);
        process.exit(1);
    }
    console.log(`PASS [${scenario}] as ${user}; screenshots in ${artifacts}`);
}

await main();
