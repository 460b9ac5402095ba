// The hostdev page: hostdevd's D-Bus API (org.hostdev.Passthrough1, man org.hostdev.Passthrough1(5)) in Cockpit.
//
// Everything shown comes from the bus: device and instance objects through the ObjectManager (cockpit.dbus
// proxies follow InterfacesAdded/Removed and PropertiesChanged), the rest from the read methods, which are called
// again only when a signal says something changed (no polling): the object signals, MdevCreated/MdevDestroyed/
// MdevsReconciled, and Devices.Generation where hostdevd has it, for the changes no other signal announces (a
// driver bound by hand, an mdev made by mdevctl). Generation alone would not do: a hostdevd started again after
// an idle exit counts from its own start, and may reach the number the page saw last. A mutation's reply is not
// used to update the page: its result arrives as the signals that every other client sees too.
import * as fmt from "./format.js";

const cockpit = window.cockpit;
const _ = cockpit.gettext;

const BUS_NAME = "org.hostdev.Passthrough1";
const ROOT = "/org/hostdev/Passthrough1";
const DEVICES = BUS_NAME + ".Devices";
const INSTANCES = BUS_NAME + ".Instances";
const DEVICE = BUS_NAME + ".Device";
const INSTANCE = BUS_NAME + ".Instance";
const VIEWS = ["host", "devices", "vgpu", "instances"];

// Let polkit ask for authentication where it can (an options a{sv} of every mutating method).
const interactive = () => ({ interactive: cockpit.variant("b", true) });

const $ = id => document.getElementById(id);

// ---------------------------------------------------------------------------------------------------------------
// DOM helpers: text goes in as text (names and messages come from the bus), never as markup.

function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
        if (value === null || value === undefined || value === false)
            continue;
        if (key === "class")
            el.className = value;
        else if (key.startsWith("on"))
            el.addEventListener(key.slice(2), value);
        else
            el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const child of children.flat()) {
        if (child === null || child === undefined || child === false)
            continue;
        el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
}

function cell(label, ...children) {
    return h("td", { "data-label": label }, ...children);
}

function actionsCell(...children) {
    return h("td", { class: "actions-cell" }, ...children);
}

// Replaces the rows of tbody, keyed by data-key, and gives focus back to the same action of the same row.
function updateRows(tbody, items, keyOf, build) {
    const active = document.activeElement;
    let focusKey = null;
    let focusAction = null;
    if (active && tbody.contains(active)) {
        focusKey = active.closest("tr")?.dataset.key ?? null;
        focusAction = active.dataset.action ?? null;
    }
    const rows = items.map(item => {
        const tr = h("tr", { "data-key": keyOf(item) });
        append(tr, build(item));
        return tr;
    });
    tbody.replaceChildren(...rows);
    if (focusKey !== null) {
        const row = rows.find(tr => tr.dataset.key === focusKey);
        const target = row && (row.querySelector(`[data-action="${focusAction}"]`) || row.querySelector("button, a"));
        if (target)
            target.focus();
        else
            tbody.closest(".view")?.querySelector("h2")?.focus();
    }
}

function setHidden(el, hidden) {
    el.hidden = hidden;
}

let announceTimer = null;
function announce(text) {
    const el = $("announcer");
    el.textContent = "";
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { el.textContent = text }, 50);
}

function errorBlock(title, ex) {
    const e = fmt.describeError(ex);
    return h("div", { class: "alert danger", "data-error": e.short },
             h("p", { class: "alert-title" }, title),
             h("p", { class: "alert-body" }, h("strong", { class: "error-name" }, e.short),
               e.message ? ": " : "", e.message ? h("span", { class: "error-message" }, e.message) : null),
             e.name ? h("p", { class: "alert-detail" }, _("D-Bus error"), " ", h("code", {}, e.name)) : null);
}

// An error of an action outside a dialog: at the top of the page, until dismissed or replaced.
function showError(title, ex) {
    const alerts = $("alerts");
    const block = errorBlock(title, ex);
    block.setAttribute("role", "alert");
    const dismiss = h("button", { type: "button", class: "plain dismiss", "aria-label": _("Dismiss: ") + title },
                      "×");
    dismiss.addEventListener("click", () => block.remove());
    block.prepend(dismiss);
    alerts.prepend(block);
    while (alerts.children.length > 3)
        alerts.lastElementChild.remove();
}

function clearErrors() {
    $("alerts").replaceChildren();
}

// ---------------------------------------------------------------------------------------------------------------
// State

const state = {
    client: null,
    api: null, // the Devices interface of the root object
    devices: null, // proxies of Device objects, by path
    instances: null, // proxies of Instance objects, by path
    host: null, // CheckHost
    candidates: null, // ListAvailable
    resources: null, // GetGpuResources
    readErrors: {},
    showAll: false,
    expanded: new Set(), // PFs whose virtual functions the candidates table shows
    users: new Map(),
    me: null,
    superuser: null,
    owner: undefined, // the bus name of hostdevd; null while it is not running
    closed: null,
    busy: new Set(),
    ready: false,
    view: "host",
    detail: null, // instance id of the detail view
};

function deviceList() {
    if (!state.devices)
        return [];
    return Object.values(state.devices).filter(p => p.valid)
            .sort((a, b) => String(a.PciAddress).localeCompare(String(b.PciAddress)));
}

function instanceList() {
    if (!state.instances)
        return [];
    return Object.values(state.instances).filter(p => p.valid)
            .sort((a, b) => String(a.Name).localeCompare(String(b.Name)));
}

function deviceByPath(path) {
    const p = state.devices && state.devices[path];
    return p && p.valid ? p : null;
}

function instanceByPath(path) {
    const p = state.instances && state.instances[path];
    return p && p.valid ? p : null;
}

function instanceById(id) {
    return instanceList().find(p => p.Id === id) || null;
}

// ---------------------------------------------------------------------------------------------------------------
// Reads: each runs again when a signal says its answer may have changed; never on a timer.

const readers = {
    host: async () => {
        const [report] = await state.client.call(ROOT, DEVICES, "CheckHost", [], { type: "" });
        state.host = fmt.dictFromVariants(report);
    },
    candidates: async () => {
        const options = state.showAll ? { all: cockpit.variant("b", true) } : {};
        const [list] = await state.client.call(ROOT, DEVICES, "ListAvailable", [options], { type: "a{sv}" });
        state.candidates = list.map(fmt.dictFromVariants);
    },
    resources: async () => {
        const [resources] = await state.client.call(ROOT, DEVICES, "GetGpuResources", [], { type: "" });
        state.resources = fmt.dictFromVariants(resources);
    },
};

const ALL_READS = ["host", "candidates", "resources"];

const reading = {};
const readAgain = {};
const queued = new Set();
let queueTimer = null;

function refresh(...what) {
    for (const w of what)
        queued.add(w);
    if (queueTimer === null)
        queueTimer = setTimeout(runQueued, 0);
}

function runQueued() {
    queueTimer = null;
    const jobs = [...queued];
    queued.clear();
    return Promise.all(jobs.map(read));
}

function read(what) {
    if (reading[what]) {
        readAgain[what] = true;
        return reading[what];
    }
    reading[what] = readers[what]()
            .then(() => { delete state.readErrors[what] })
            .catch(ex => { state.readErrors[what] = ex })
            .finally(() => {
                reading[what] = null;
                render();
                if (readAgain[what]) {
                    readAgain[what] = false;
                    read(what);
                }
            });
    return reading[what];
}

// ---------------------------------------------------------------------------------------------------------------
// Actions. The busy key disables the action's buttons while hostdevd works (or polkit asks).

async function act(key, failTitle, call, success) {
    if (state.busy.has(key))
        return;
    state.busy.add(key);
    render();
    try {
        await call();
        if (success)
            announce(success);
    } catch (ex) {
        showError(failTitle, ex);
    } finally {
        state.busy.delete(key);
        render();
    }
}

function callRoot(iface, method, args, type) {
    return state.client.call(ROOT, iface, method, args, { type });
}

function bindDevice(dev) {
    act(dev.path, cockpit.format(_("Could not bind $0 to vfio-pci"), dev.Name),
        () => state.client.call(dev.path, DEVICE, "BindVfio", [interactive()], { type: "a{sv}" }),
        cockpit.format(_("$0 is on vfio-pci"), dev.Name));
}

function giveBack(dev) {
    act(dev.path, cockpit.format(_("Could not give $0 back to its host driver"), dev.Name),
        () => state.client.call(dev.path, DEVICE, "Restore", [interactive()], { type: "a{sv}" }),
        cockpit.format(_("$0 is back on its host driver"), dev.Name));
}

function unregisterDevice(dev) {
    confirmAction({
        title: cockpit.format(_("Unregister $0?"), dev.Name),
        text: cockpit.format(_("hostdev forgets $0 ($1). The device itself stays as it is."), dev.Name,
                             dev.PciAddress),
        ok: _("Unregister"),
        run: () => callRoot(DEVICES, "Unregister", [dev.Id, interactive()], "sa{sv}"),
        done: cockpit.format(_("$0 unregistered"), dev.Name),
    });
}

function deleteInstance(inst, afterwards) {
    confirmAction({
        title: cockpit.format(_("Delete instance $0?"), inst.Name),
        text: _("Its devices go back to their host drivers and its vGPU is destroyed."),
        ok: _("Delete"),
        run: () => state.client.call(inst.path, INSTANCE, "Delete", [interactive()], { type: "a{sv}" }),
        done: cockpit.format(_("Instance $0 deleted"), inst.Name),
        afterwards,
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Dialogs

let dialogOpener = null;

function openDialog(dialog) {
    dialogOpener = document.activeElement;
    dialog.querySelector(".dialog-error").replaceChildren();
    dialog.showModal();
}

function closeDialog(dialog) {
    if (dialog.open)
        dialog.close();
}

function setDialogBusy(dialog, busy, label) {
    const submit = dialog.querySelector("button[type=submit]");
    if (busy) {
        submit.dataset.label = submit.textContent;
        submit.textContent = label;
        submit.setAttribute("aria-disabled", "true");
        dialog.setAttribute("aria-busy", "true");
    } else {
        if (submit.dataset.label)
            submit.textContent = submit.dataset.label;
        submit.removeAttribute("aria-disabled");
        dialog.removeAttribute("aria-busy");
    }
}

function dialogError(dialog, title, ex) {
    dialog.querySelector(".dialog-error").replaceChildren(errorBlock(title, ex));
}

function fieldError(id, text) {
    const el = $(id);
    el.textContent = text || "";
    setHidden(el, !text);
    const input = el.closest(".field")?.querySelector("input");
    if (input)
        input.setAttribute("aria-invalid", text ? "true" : "false");
}

for (const dialog of document.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll("[data-close]"))
        button.addEventListener("click", () => closeDialog(dialog));
    dialog.addEventListener("close", () => {
        setDialogBusy(dialog, false);
        // The opener may be gone (a registered device has no Register button): then the view's heading.
        if (dialogOpener && dialogOpener.isConnected)
            dialogOpener.focus();
        else
            document.querySelector(".view:not([hidden]) h2")?.focus();
        dialogOpener = null;
    });
}

let registerAddress = null;

function openRegister(address) {
    registerAddress = address;
    $("register-address").textContent = address;
    $("register-name").value = "";
    $("register-name-help").textContent =
        cockpit.format(_("Leave empty for the automatic name $0. Letters, digits, dots, dashes and underscores."),
                       fmt.autoName(address));
    fieldError("register-name-error", "");
    openDialog($("register-dialog"));
    $("register-name").focus();
}

$("register-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const dialog = $("register-dialog");
    if (dialog.getAttribute("aria-busy") === "true")
        return;
    const name = $("register-name").value.trim();
    if (name && !fmt.validName(name)) {
        fieldError("register-name-error",
                   _("Use letters, digits, dots, dashes and underscores, starting with a letter or digit."));
        $("register-name").focus();
        return;
    }
    fieldError("register-name-error", "");
    dialog.querySelector(".dialog-error").replaceChildren();
    setDialogBusy(dialog, true, _("Registering…"));
    try {
        await callRoot(DEVICES, "Register", [name, registerAddress, interactive()], "ssa{sv}");
        closeDialog(dialog);
        announce(cockpit.format(_("$0 registered"), name || fmt.autoName(registerAddress)));
    } catch (ex) {
        setDialogBusy(dialog, false);
        dialogError(dialog, cockpit.format(_("Could not register $0"), registerAddress), ex);
    }
});

function openCreate() {
    const form = $("create-form");
    form.reset();
    fieldError("create-name-error", "");
    setHidden($("create-spec-error"), true);
    const free = deviceList().filter(d => d.AttachedTo === "/");
    $("create-devices").replaceChildren(...free.map(d => {
        const id = "create-dev-" + d.Id;
        return h("div", { class: "check" },
                 h("input", { type: "checkbox", id, value: d.Id, name: "devices" }),
                 h("label", { for: id }, d.Name, " ", h("span", { class: "muted" }, d.PciAddress)));
    }));
    setHidden($("create-devices-empty"), free.length > 0);
    const select = $("create-profile");
    const profiles = [...((state.resources && state.resources.profiles) || [])]
            .sort((a, b) => Number(a.framebuffer_mb) - Number(b.framebuffer_mb));
    select.replaceChildren(h("option", { value: "" }, _("No vGPU")), ...profiles.map(p =>
        h("option", { value: p.name, disabled: Number(p.available) === 0 },
          cockpit.format(_("$0 — $1, $2 available"), p.name, fmt.formatMiB(p.framebuffer_mb), p.available))));
    select.disabled = profiles.length === 0;
    openDialog($("create-dialog"));
    $("create-name").focus();
}

$("create-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const dialog = $("create-dialog");
    if (dialog.getAttribute("aria-busy") === "true")
        return;
    const name = $("create-name").value.trim();
    const devices = [...$("create-devices").querySelectorAll("input:checked")].map(i => i.value);
    const profile = $("create-profile").value;
    const image = $("create-image").value.trim();
    let bad = false;
    if (!name) {
        fieldError("create-name-error", _("Give the instance a name."));
        bad = true;
    } else if (!fmt.validName(name)) {
        fieldError("create-name-error",
                   _("Use letters, digits, dots, dashes and underscores, starting with a letter or digit."));
        bad = true;
    } else {
        fieldError("create-name-error", "");
    }
    const specError = $("create-spec-error");
    specError.textContent = _("Choose at least one device or a vGPU profile.");
    setHidden(specError, devices.length > 0 || profile !== "");
    if (bad || !specError.hidden) {
        (bad ? $("create-name") : $("create-profile")).focus();
        return;
    }
    const spec = interactive();
    if (devices.length)
        spec.devices = cockpit.variant("as", devices);
    if (profile)
        spec.gpu_profile = cockpit.variant("s", profile);
    if (image)
        spec.image = cockpit.variant("s", image);
    dialog.querySelector(".dialog-error").replaceChildren();
    setDialogBusy(dialog, true, _("Creating…"));
    try {
        await callRoot(INSTANCES, "Create", [name, spec], "sa{sv}");
        closeDialog(dialog);
        announce(cockpit.format(_("Instance $0 created"), name));
    } catch (ex) {
        setDialogBusy(dialog, false);
        dialogError(dialog, cockpit.format(_("Could not create instance $0"), name), ex);
    }
});

let confirmRequest = null;

function confirmAction(request) {
    confirmRequest = request;
    $("confirm-title").textContent = request.title;
    $("confirm-text").textContent = request.text;
    $("confirm-ok").textContent = request.ok;
    openDialog($("confirm-dialog"));
    $("confirm-dialog").querySelector("[data-close]").focus();
}

$("confirm-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const dialog = $("confirm-dialog");
    const request = confirmRequest;
    if (!request || dialog.getAttribute("aria-busy") === "true")
        return;
    dialog.querySelector(".dialog-error").replaceChildren();
    setDialogBusy(dialog, true, _("Working…"));
    try {
        await request.run();
        closeDialog(dialog);
        announce(request.done);
        if (request.afterwards)
            request.afterwards();
    } catch (ex) {
        setDialogBusy(dialog, false);
        dialogError(dialog, request.title.replace(/\?$/, "") + ": " + _("failed"), ex);
    }
});

// ---------------------------------------------------------------------------------------------------------------
// Views and navigation (cockpit.location: #/devices, #/instances/ID)

function route() {
    const path = cockpit.location.path;
    const view = VIEWS.includes(path[0]) ? path[0] : "host";
    state.view = view;
    state.detail = view === "instances" && path.length > 1 ? path[1] : null;
    for (const tab of document.querySelectorAll("[role=tab]")) {
        const selected = tab.dataset.view === view;
        tab.setAttribute("aria-selected", selected ? "true" : "false");
        tab.tabIndex = selected ? 0 : -1;
    }
    for (const v of VIEWS)
        setHidden($("view-" + v), v !== view || (v === "instances" && state.detail !== null));
    setHidden($("view-instance"), state.detail === null);
    render();
}

function go(view) {
    cockpit.location.go([view]);
}

const tabs = [...document.querySelectorAll("[role=tab]")];
for (const tab of tabs) {
    tab.addEventListener("click", () => go(tab.dataset.view));
    tab.addEventListener("keydown", ev => {
        const i = tabs.indexOf(tab);
        const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
        if (next === undefined)
            return;
        ev.preventDefault();
        const target = tabs[(next + tabs.length) % tabs.length];
        target.focus();
        go(target.dataset.view);
    });
}

cockpit.addEventListener("locationchanged", route);

$("host-recheck").addEventListener("click", () => {
    refresh("host");
    announce(_("Checking the host again"));
});

$("show-all").addEventListener("change", ev => {
    state.showAll = ev.target.checked;
    refresh("candidates");
});

$("create-instance").addEventListener("click", openCreate);

$("detail-delete").addEventListener("click", () => {
    const inst = state.detail && instanceById(state.detail);
    if (inst)
        deleteInstance(inst, () => go("instances"));
});

for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", () => copyText($(button.dataset.copy).textContent, button));
}

async function copyText(text, button) {
    let ok = false;
    try {
        if (navigator.clipboard && window.isSecureContext) {
            await navigator.clipboard.writeText(text);
            ok = true;
        }
    } catch (ex) {
        ok = false;
    }
    if (!ok) {
        // Plain http outside localhost has no clipboard API: copy from a selection instead.
        const area = h("textarea", { class: "copy-buffer", readonly: true, "aria-hidden": "true" });
        area.value = text;
        document.body.append(area);
        area.select();
        ok = document.execCommand("copy");
        area.remove();
        button.focus();
    }
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? _("Copied") : _("Select the text and copy it");
    announce(ok ? _("Copied to the clipboard") : _("Could not copy: select the text and copy it"));
    setTimeout(() => { button.textContent = label }, 2000);
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering

let renderQueued = false;
function render() {
    if (renderQueued)
        return;
    renderQueued = true;
    queueMicrotask(() => {
        renderQueued = false;
        renderNow();
    });
}

function renderNow() {
    renderConnection();
    renderHost();
    renderDevices();
    renderCandidates();
    renderVgpu();
    renderInstances();
    renderDetail();
    checkReady();
}

function renderConnection() {
    const el = $("connection");
    el.classList.remove("bad");
    if (state.closed) {
        el.textContent = _("Not connected to hostdevd");
        el.classList.add("bad");
    } else if (state.owner === null) {
        el.textContent = _("hostdevd is stopped; it starts again when needed");
    } else if (state.api && state.api.valid) {
        el.textContent = cockpit.format(_("hostdevd $0 · live"), state.api.Version);
    } else {
        el.textContent = _("Connecting to hostdevd…");
    }

    const note = $("access-note");
    const su = state.superuser;
    if (su === "root") {
        note.textContent = _("Administrative access is on: your changes are made as root.");
    } else if (state.me && state.me.id !== 0) {
        note.textContent = cockpit.format(
            _("Limited access: hostdevd asks polkit whether $0 may make each change. If a change is refused, " +
              "turn on administrative access in Cockpit, or ask an administrator to allow your user."),
            state.me.name);
    } else {
        note.textContent = "";
    }
    setHidden(note, note.textContent === "");
}

function readFailure(el, what, title) {
    const ex = state.closed ? null : state.readErrors[what]; // a closed connection is said once, at the top
    const existing = el.querySelector(".read-error");
    if (existing)
        existing.remove();
    if (ex) {
        const block = errorBlock(title, ex);
        block.classList.add("read-error");
        el.prepend(block);
    }
}

function status(ok, okText, badText, warn) {
    return h("span", { class: "status " + (ok ? "ok" : warn ? "warn" : "bad") },
             h("span", { class: "icon", "aria-hidden": "true" }, ok ? "✓" : "!"), ok ? okText : badText);
}

function renderHost() {
    const view = $("view-host");
    readFailure(view, "host", _("Could not check the host"));
    const r = state.host;
    const tbody = $("host-checks").tBodies[0];
    setHidden($("host-checks").closest(".table-wrap"), !r);
    setHidden($("host-recheck"), !!state.closed);
    if (!r) {
        tbody.replaceChildren();
        for (const id of ["host-problems", "host-problems-title", "host-no-problems"])
            setHidden($(id), true);
        return;
    }
    const hugepages = Number(r.hugepages_total || 0) > 0;
    const rows = [
        [_("IOMMU"), r.iommu_enabled ? _("On") : _("Off"), status(r.iommu_enabled, _("Ready"), _("Problem"))],
        [_("vfio-pci driver"), r.vfio_pci_available ? _("Available") : _("Missing"),
            status(r.vfio_pci_available, _("Ready"), _("Problem"))],
        [_("vfio_iommu_type1 module"), r.vfio_iommu_type1_loaded ? _("Loaded") : _("Not loaded"),
            status(r.vfio_iommu_type1_loaded, _("Ready"), _("Problem"))],
        [_("Hugepages"), fmt.hugepagesText(r), status(hugepages, _("Ready"), _("Warning"), true)],
        [_("GPU mode"), fmt.gpuModeText(r), status(r.gpu_mode !== "none", _("Ready"), _("No GPU to hand over"), true)],
    ];
    updateRows(tbody, rows, row => row[0], row => [
        h("th", { scope: "row", "data-label": _("Check") }, row[0]),
        cell(_("Result"), row[1]),
        cell(_("Status"), row[2]),
    ]);
    const problems = fmt.problemsWithHints(r);
    $("host-problems").replaceChildren(...problems.map(p =>
        h("li", { class: "problem" },
          h("p", { class: "problem-text" }, p.problem),
          p.hint ? h("p", { class: "hint" }, h("span", { class: "hint-label" }, _("How to fix:")), " ", p.hint) : null)));
    setHidden($("host-problems"), problems.length === 0);
    setHidden($("host-problems-title"), problems.length === 0);
    setHidden($("host-no-problems"), problems.length !== 0);
}

function actionButton(action, label, ariaLabel, onClick, opts) {
    const o = opts || {};
    const b = h("button", {
        type: "button",
        class: o.class || "secondary",
        "data-action": action,
        "aria-label": ariaLabel,
        "aria-disabled": o.busy ? "true" : null,
        disabled: o.disabled || null,
        title: o.title || null,
    }, label);
    b.addEventListener("click", () => {
        if (b.getAttribute("aria-disabled") !== "true")
            onClick();
    });
    return b;
}

function instanceLink(path) {
    const inst = instanceByPath(path);
    const id = inst ? inst.Id : fmt.lastElement(path);
    return h("a", { href: "#/instances/" + encodeURIComponent(id) }, inst ? inst.Name : id);
}

function renderDevices() {
    const view = $("view-devices");
    const devices = deviceList();
    const tbody = $("devices-table").tBodies[0];
    updateRows(tbody, devices, d => d.path, d => {
        const busy = state.busy.has(d.path);
        const attached = d.AttachedTo && d.AttachedTo !== "/";
        const what = [d.VendorName, d.DeviceName].filter(Boolean).join(" ") || d.VendorId + ":" + d.DeviceId;
        const actions = h("div", { class: "actions" });
        if (busy)
            actions.append(h("span", { class: "working" }, _("Working…")));
        if (!d.BoundToVfio) {
            actions.append(actionButton("bind", _("Bind to vfio-pci"),
                                        cockpit.format(_("Bind $0 to vfio-pci"), d.Name), () => bindDevice(d),
                                        { busy }));
        } else {
            actions.append(actionButton("restore", _("Give back"),
                                        cockpit.format(_("Give $0 back to its host driver"), d.Name),
                                        () => giveBack(d), { busy, disabled: attached }));
        }
        actions.append(actionButton("unregister", _("Unregister"), cockpit.format(_("Unregister $0"), d.Name),
                                    () => unregisterDevice(d),
                                    { busy, disabled: attached, class: "secondary danger-text" }));
        return [
            h("th", { scope: "row", "data-label": _("Name") }, d.Name),
            cell(_("PCI address"), h("code", {}, d.PciAddress)),
            cell(_("Device"), what, d.Type ? h("span", { class: "muted block" }, fmt.typeText(d.Type)) : null),
            cell(_("Driver"), d.Driver || h("span", { class: "muted" }, _("none"))),
            cell(_("IOMMU group"), d.IommuGroup >= 0 ? String(d.IommuGroup) : h("span", { class: "muted" }, _("none"))),
            cell(_("Binding"), d.BoundToVfio
                ? h("span", { class: "badge vfio" }, _("vfio-pci: ready for a VM"))
                : h("span", { class: "badge host" }, d.Driver ? _("Host driver") : _("No driver"))),
            cell(_("Attached to"), attached ? instanceLink(d.AttachedTo) : h("span", { class: "muted" }, _("Free"))),
            actionsCell(actions),
        ];
    });
    showTable("devices", state.ready, devices.length);
    readFailure(view, "candidates", _("Could not list the candidates"));
}

function renderCandidates() {
    const list = state.candidates || [];
    const rows = fmt.candidateRows(list, state.expanded);
    const tbody = $("candidates-table").tBodies[0];
    updateRows(tbody, rows, r => r.fn.pci_address, ({ fn: c, vfs }) => {
        const registered = c.registered && c.registered !== "/" ? c.registered : null;
        const dev = registered && deviceByPath(registered);
        const what = [c.vendor_name, c.device_name].filter(Boolean).join(" ") || c.vendor_id + ":" + c.device_id;
        const group = c.iommu_group !== undefined ? String(c.iommu_group) : null;
        const members = (c.iommu_group_members || []).filter(m => m !== c.pci_address);
        let fold = null;
        if (vfs > 0) {
            const open = state.expanded.has(c.pci_address);
            fold = h("button", { type: "button", class: "link", "data-action": "fold", "aria-expanded": String(open) },
                     open ? _("Hide its virtual functions")
                         : cockpit.format(cockpit.ngettext("Show its $0 virtual function",
                                                           "Show its $0 virtual functions", vfs), vfs));
            fold.addEventListener("click", () => {
                if (state.expanded.has(c.pci_address))
                    state.expanded.delete(c.pci_address);
                else
                    state.expanded.add(c.pci_address);
                render();
            });
        }
        // hostdevd refuses to register bridges (base class 0x06): they stay with the host.
        const bridge = typeof c.class === "string" && c.class.startsWith("0x06");
        return [
            h("th", { scope: "row", "data-label": _("PCI address") }, h("code", {}, c.pci_address),
              c.physfn ? h("span", { class: "muted block" }, _("virtual function")) : null),
            cell(_("Device"), what, c.class ? h("span", { class: "muted block" }, fmt.classText(c.class)) : null, fold),
            cell(_("Driver"), c.driver || h("span", { class: "muted" }, _("none"))),
            cell(_("IOMMU group"), group ?? h("span", { class: "muted" }, _("none")),
                 members.length ? h("span", { class: "muted block" }, _("with") + " " + members.join(", ")) : null),
            cell(_("Registered as"), registered ? (dev ? dev.Name : fmt.lastElement(registered))
                : h("span", { class: "muted" }, bridge ? _("Stays with the host (a bridge)") : _("Not registered"))),
            actionsCell(registered || bridge ? null
                : actionButton("register", _("Register…"), cockpit.format(_("Register $0"), c.pci_address),
                               () => openRegister(c.pci_address))),
        ];
    });
    showTable("candidates", state.candidates !== null, list.length);
}

// A table with no rows is left out, and its empty message is shown instead (once there is an answer).
function showTable(name, known, count) {
    setHidden($(name + "-table").closest(".table-wrap"), count === 0);
    setHidden($(name + "-empty"), !known || count > 0);
}

function renderVgpu() {
    const view = $("view-vgpu");
    readFailure(view, "resources", _("Could not read the vGPU resources"));
    const r = state.resources;
    if (!r)
        return;
    const mode = { vgpu: _("This host shares its GPUs as vGPUs."),
                   passthrough: _("This host hands whole GPUs to VMs; it offers no vGPUs."),
                   none: _("This host has no GPU that can be handed to a VM.") }[r.mode] || String(r.mode);
    $("vgpu-mode").textContent = mode;
    const total = Number(r.total_slots || 0);
    const used = Number(r.used_slots || 0);
    const bar = $("slots-bar");
    bar.max = Math.max(total, 1);
    bar.value = used;
    $("slots-text").textContent = cockpit.format(_("$0 of $1 slots used"), used, total);
    // One bar per GPU (a PF and its VFs).
    const perGpu = $("gpu-slots");
    perGpu.replaceChildren(...(r.gpus || []).map((g, i) => {
        const id = "gpu-slots-" + i;
        const gTotal = Number(g.total_slots || 0);
        const gUsed = Number(g.used_slots || 0);
        const extra = [];
        if (Number(g.framebuffer_used_mb || 0) > 0)
            extra.push(cockpit.format(_("$0 framebuffer in use"), fmt.formatMiB(g.framebuffer_used_mb)));
        if (Number(g.quarantined_slots || 0) > 0)
            extra.push(cockpit.format(_("$0 quarantined"), g.quarantined_slots));
        return h("li", { class: "slots", "data-gpu": g.pci_address },
                 h("span", { id: id + "-label", class: "slots-label" },
                   g.name && g.name !== g.pci_address ? g.name + " " : "", h("code", {}, g.pci_address)),
                 h("progress", { "aria-labelledby": id + "-label", "aria-describedby": id + "-text",
                                 max: String(Math.max(gTotal, 1)), value: String(gUsed) }),
                 h("span", { id: id + "-text", class: "slots-text" },
                   cockpit.format(_("$0 of $1 slots used"), gUsed, gTotal)),
                 extra.length ? h("span", { class: "slots-extra" }, extra.join(", ")) : "");
    }));
    const profiles = [...(r.profiles || [])].sort((a, b) =>
        Number(a.framebuffer_mb) - Number(b.framebuffer_mb) || String(a.name).localeCompare(String(b.name)));
    updateRows($("profiles-table").tBodies[0], profiles, p => p.type || p.name, p => [
        h("th", { scope: "row", "data-label": _("Profile") }, p.name),
        cell(_("Type"), h("code", {}, p.type)),
        cell(_("Framebuffer"), fmt.formatMiB(p.framebuffer_mb)),
        cell(_("Available"), h("span", { class: "available", "data-available": p.available }, String(p.available))),
    ]);
    showTable("profiles", true, profiles.length);
    const gpus = r.devices || [];
    updateRows($("gpus-table").tBodies[0], gpus, g => g.pci_address, g => [
        h("th", { scope: "row", "data-label": _("Name") }, g.name),
        cell(_("PCI address"), h("code", {}, g.pci_address)),
        cell(_("Free"), g.available ? _("Yes") : _("No")),
    ]);
    showTable("gpus", true, gpus.length);
}

function instanceDevices(inst) {
    return (inst.Devices || []).map(path => {
        const d = deviceByPath(path);
        return { name: d ? d.Name : fmt.lastElement(path), boundToVfio: d ? !!d.BoundToVfio : false };
    });
}

function renderInstances() {
    const list = instanceList();
    updateRows($("instances-table").tBodies[0], list, i => i.path, i => {
        const devs = instanceDevices(i);
        const st = fmt.instanceState({ gpuProfile: i.GpuProfile, mdevUuid: i.MdevUuid, vgpuVf: i.VgpuVf,
                                       state: i.State, stateReason: i.StateReason }, devs);
        return [
            h("th", { scope: "row", "data-label": _("Name") },
              h("a", { href: "#/instances/" + encodeURIComponent(i.Id), "data-action": "details",
                       "aria-label": cockpit.format(_("Details of $0"), i.Name) }, i.Name)),
            cell(_("Owner"), fmt.ownerText(i.Owner, state.users)),
            cell(_("Devices"), devs.length ? devs.map(d => d.name).join(", ") : h("span", { class: "muted" }, _("none"))),
            cell(_("vGPU"), i.GpuProfile || h("span", { class: "muted" }, _("none"))),
            cell(_("State"), h("span", { class: "status " + (st.ok ? "ok" : "warn") },
                               h("span", { class: "icon", "aria-hidden": "true" }, st.ok ? "✓" : "!"), st.text)),
            actionsCell(h("div", { class: "actions" },
                                 actionButton("delete", _("Delete"), cockpit.format(_("Delete instance $0"), i.Name),
                                              () => deleteInstance(i), { class: "secondary danger-text" }))),
        ];
    });
    showTable("instances", state.ready, list.length);
}

function renderDetail() {
    if (state.detail === null)
        return;
    const inst = instanceById(state.detail);
    setHidden($("detail-gone"), !!inst || !state.ready);
    setHidden($("detail-body"), !inst);
    $("detail-delete").hidden = !inst;
    if (!inst) {
        $("detail-title").textContent = cockpit.format(_("Instance $0"), state.detail);
        return;
    }
    $("detail-title").textContent = cockpit.format(_("Instance $0"), inst.Name);
    $("detail-delete").setAttribute("aria-label", cockpit.format(_("Delete instance $0"), inst.Name));
    const devs = instanceDevices(inst);
    const facts = [
        [_("Id"), inst.Id],
        [_("Owner"), fmt.ownerText(inst.Owner, state.users)],
        [_("Created"), fmt.formatTime(inst.CreatedAt)],
        [_("Image"), inst.Image || _("none")],
        [_("Devices"), devs.length ? devs.map(d => d.name).join(", ") : _("none")],
        [_("vGPU profile"), inst.GpuProfile || _("none")],
        inst.VgpuVf ? [_("vGPU VF"), inst.VgpuVf] : [_("vGPU UUID"), inst.MdevUuid || _("none")],
    ];
    if (inst.VgpuVf)
        facts.push([_("VM UUID"), inst.Uuid || _("none")]);
    $("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    $("detail-paths").replaceChildren(...(inst.DevicePaths || []).map(p => h("li", {}, h("code", {}, p))));
    $("qemu-args").textContent = fmt.commandLine(inst.QemuArgs);
    $("ch-args").textContent = fmt.commandLine(inst.CloudHypervisorArgs);
}

// The page is populated once the objects and every read have arrived the first time: mark it for the tests and
// for anyone measuring (performance.getEntriesByName("hostdev-populated")).
function checkReady() {
    if (state.ready)
        return;
    if (!state.devicesLoaded || !state.instancesLoaded)
        return;
    for (const what of Object.keys(readers)) {
        if (state[what] === null && !state.readErrors[what])
            return;
    }
    state.ready = true;
    document.body.dataset.state = "ready";
    performance.mark("hostdev-populated");
    render();
}

// ---------------------------------------------------------------------------------------------------------------
// Connection and signals

function connect() {
    // superuser "try": with administrative access the bridge talks as root, else as the logged-in user, and
    // hostdevd asks polkit. Reads need neither.
    const client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });
    state.client = client;

    client.addEventListener("close", (ev, options) => {
        state.closed = options || {};
        const problem = state.closed.problem || "disconnected";
        const message = problem === "not-found"
            ? _("hostdevd is not installed, or could not be started. Its log says why: journalctl -u hostdevd")
            : cockpit.message(state.closed);
        clearErrors();
        showError(_("No connection to hostdevd"), { problem, message });
        const retry = h("button", { type: "button", class: "secondary" }, _("Try again"));
        retry.addEventListener("click", () => window.location.reload());
        $("alerts").firstElementChild.append(h("p", { class: "alert-actions" }, retry));
        document.body.dataset.state = "failed";
        render();
    });
    client.addEventListener("owner", (ev, owner) => {
        // A new hostdevd (bus-activated again after an idle exit) counts Generation from its own start.
        const restarted = state.owner !== undefined && owner;
        state.owner = owner;
        if (restarted)
            refresh(...ALL_READS);
        render();
    });

    state.api = client.proxy(DEVICES, ROOT);
    state.api.addEventListener("changed", (ev, data) => {
        if (data && ("Generation" in data || "GpuMode" in data || "IommuEnabled" in data || "VfioAvailable" in data))
            refresh(...ALL_READS);
        render();
    });
    state.api.addEventListener("signal", (ev, name) => {
        if (name === "MdevCreated" || name === "MdevDestroyed" || name === "MdevsReconciled")
            refresh("resources", "host");
    });
    state.api.wait().then(render);

    state.devices = client.proxies(DEVICE, ROOT);
    const devicesChanged = () => {
        refresh("candidates", "resources", "host");
        render();
    };
    state.devices.addEventListener("added", devicesChanged);
    state.devices.addEventListener("removed", devicesChanged);
    state.devices.addEventListener("changed", devicesChanged);
    state.devices.wait().then(() => {
        state.devicesLoaded = true;
        render();
    });

    state.instances = client.proxies(INSTANCE, ROOT);
    const instancesChanged = () => {
        refresh("resources");
        render();
    };
    state.instances.addEventListener("added", instancesChanged);
    state.instances.addEventListener("removed", instancesChanged);
    state.instances.addEventListener("changed", instancesChanged);
    state.instances.wait().then(() => {
        state.instancesLoaded = true;
        render();
    });

    refresh(...ALL_READS);
}

function whoAmI() {
    cockpit.user().then(user => {
        state.me = user;
        render();
    });
    // Administrative access turned on or off in Cockpit: the channel of superuser "try" was opened as the old
    // user, so the page starts again (as cockpit.js's own permission object does).
    const superuser = cockpit.dbus(null, { bus: "internal" }).proxy("cockpit.Superuser", "/superuser");
    let settled = null;
    const update = () => {
        state.superuser = superuser.valid ? superuser.Current : null;
        if (state.superuser === "root" || state.superuser === "none") {
            if (settled !== null && settled !== state.superuser)
                window.location.reload();
            settled = state.superuser;
        }
        render();
    };
    superuser.addEventListener("changed", update);
    superuser.wait().then(update);
    // Owners are uids: their names from the password database (readable by everyone).
    cockpit.file("/etc/passwd").read()
            .then(text => {
                state.users = fmt.parsePasswd(text);
                render();
            })
            .catch(() => {});
}

// Headings take the focus when the control that had it goes away.
for (const heading of document.querySelectorAll(".view h2"))
    heading.tabIndex = -1;

route();
connect();
whoAmI();
