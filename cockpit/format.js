// Pure helpers of the hostdev page: no DOM, no cockpit.js, so that tests/cockpit/format_test.mjs can run them in node.

export const ERROR_PREFIX = "org.hostdev.Passthrough1.Error.";

// The names hostdevd accepts (man org.hostdev.Passthrough1: Register, Create).
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function validName(name) {
    return NAME_RE.test(name);
}

// Register's automatic name for the empty name: pci-DDDD-BB-DD-F.
export function autoName(pciAddress) {
    return "pci-" + pciAddress.replace(/[:.]/g, "-");
}

// A D-Bus error or a Cockpit problem as { short, name, message } for the page.
// short: the last part of an org.hostdev.Passthrough1.Error.* name, or the whole D-Bus name, or the problem code.
export function describeError(ex) {
    if (ex && ex.name) {
        const name = String(ex.name);
        const short = name.startsWith(ERROR_PREFIX) ? name.slice(ERROR_PREFIX.length) : name;
        return { short, name, message: ex.message ? String(ex.message) : "" };
    }
    if (ex && ex.problem) {
        const message = ex.message && String(ex.message) !== String(ex.problem) ? String(ex.message) : "";
        return { short: String(ex.problem), name: "", message };
    }
    return { short: "Error", name: "", message: ex && ex.message ? String(ex.message) : String(ex) };
}

// One argument as the shell would need it: plain when it is safe, else in single quotes.
export function shellQuote(arg) {
    const s = String(arg);
    if (s !== "" && /^[A-Za-z0-9_\-.,:=/@+%]+$/.test(s))
        return s;
    return "'" + s.replace(/'/g, "'\\''") + "'";
}

export function commandLine(args) {
    return (args || []).map(shellQuote).join(" ");
}

export function formatMiB(mb) {
    const n = Number(mb);
    if (n >= 1024 && n % 1024 === 0)
        return (n / 1024) + " GiB";
    if (n >= 1024)
        return (n / 1024).toFixed(1) + " GiB";
    return n + " MiB";
}

export function formatKiB(kb) {
    const n = Number(kb);
    if (n >= 1048576 && n % 1048576 === 0)
        return (n / 1048576) + " GiB";
    if (n >= 1024 && n % 1024 === 0)
        return (n / 1024) + " MiB";
    return n + " KiB";
}

export function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
}

// "1024 of 1024 free, 2 MiB each" or "none reserved".
export function hugepagesText(report) {
    const total = Number(report.hugepages_total || 0);
    if (total === 0)
        return "None reserved";
    const free = Number(report.hugepages_free || 0);
    const size = Number(report.hugepage_size_kb || 0);
    return free + " of " + total + " free" + (size ? ", " + formatKiB(size) + " each" : "");
}

export function gpuModeText(report) {
    const gpus = Number(report.gpu_count || 0);
    const parents = Number(report.mdev_parent_count || 0);
    const vfs = Number(report.vendor_vf_count || 0);
    const counts = [];
    if (report.gpu_count !== undefined)
        counts.push(plural(gpus, "GPU function", "GPU functions"));
    if (report.mdev_parent_count !== undefined && parents > 0)
        counts.push(plural(parents, "vGPU parent", "vGPU parents"));
    if (vfs > 0)
        counts.push(plural(vfs, "vendor-VFIO VF", "vendor-VFIO VFs"));
    let mode = { vgpu: "vGPU", passthrough: "Whole-GPU passthrough", none: "None" }[report.gpu_mode] ||
        String(report.gpu_mode || "unknown");
    const framework = { "mdev": "mediated devices", "vendor-vfio": "NVIDIA vendor-specific VFIO",
                        "mdev+vendor-vfio": "mediated devices and NVIDIA vendor-specific VFIO" }[report.gpu_framework];
    if (report.gpu_mode === "vgpu" && framework)
        mode += " on " + framework;
    return counts.length ? mode + " (" + counts.join(", ") + ")" : mode;
}

// Pairs problems with their hints (CheckHost returns them in the same order).
export function problemsWithHints(report) {
    const problems = report.problems || [];
    const hints = report.hints || [];
    return problems.map((problem, i) => ({ problem, hint: hints[i] || "" }));
}

// What an instance's row says about it. devices: [{ name, boundToVfio }] of its devices as far as known.
export function instanceState(instance, devices) {
    // After a reboot hostdevd says itself what it could not restore.
    if (instance.state === "degraded")
        return { ok: false, text: "Degraded: " + (instance.stateReason || "something could not be restored") };
    if (instance.state === "restoring")
        return { ok: false, text: "Restoring after a reboot" };
    const missing = devices.filter(d => !d.boundToVfio).map(d => d.name);
    if (missing.length)
        return { ok: false, text: "Not ready: " + missing.join(", ") + " not on vfio-pci" };
    if (instance.gpuProfile && !instance.mdevUuid && !instance.vgpuVf)
        return { ok: false, text: "Not ready: no vGPU" };
    return { ok: true, text: "Ready" };
}

// uid -> user name, from the text of /etc/passwd.
export function parsePasswd(text) {
    const users = new Map();
    for (const line of String(text || "").split("\n")) {
        const fields = line.split(":");
        if (fields.length >= 3 && /^[0-9]+$/.test(fields[2]))
            users.set(Number(fields[2]), fields[0]);
    }
    return users;
}

export function ownerText(uid, users) {
    const name = users && users.get(Number(uid));
    return name ? name + " (" + uid + ")" : "uid " + uid;
}

// CreatedAt is in µs since the epoch.
export function formatTime(usec) {
    const n = Number(usec);
    if (!n)
        return "";
    return new Date(n / 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function lastElement(path) {
    const s = String(path || "");
    return s.slice(s.lastIndexOf("/") + 1);
}

// cockpit.js hands a D-Bus variant over as { t: signature, v: value }: these turn the a{sv} and aa{sv} that
// hostdevd returns into plain objects (nested a{sv} and aa{sv} values too).
export function fromVariant(variant) {
    if (!variant || typeof variant !== "object" || !("t" in variant))
        return variant;
    return fromValue(variant.t, variant.v);
}

export function fromValue(type, value) {
    if (type === "v")
        return fromVariant(value);
    if (type === "a{sv}")
        return dictFromVariants(value);
    if (type === "aa{sv}")
        return (value || []).map(dictFromVariants);
    return value;
}

export function dictFromVariants(dict) {
    const out = {};
    for (const key of Object.keys(dict || {}))
        out[key] = fromVariant(dict[key]);
    return out;
}

// The PCI class code ("0x030200") in words; the code itself for classes without a common name.
const CLASS_NAMES = {
    "0x0300": "VGA controller",
    "0x0302": "3D controller",
    "0x0380": "Display controller",
    "0x0403": "Audio device",
    "0x0200": "Ethernet controller",
    "0x0207": "InfiniBand controller",
    "0x0108": "NVMe controller",
    "0x0106": "SATA controller",
    "0x0c03": "USB controller",
    "0x0604": "PCI bridge",
    "0x1200": "Processing accelerator",
};

export function classText(code) {
    const s = String(code || "").toLowerCase();
    return CLASS_NAMES[s.slice(0, 6)] || (s ? "class " + s : "");
}

// Candidates in the order of the table: each physical function followed by its virtual functions, which are
// left out unless their PF is in `expanded`. Returns [{ fn, vfs (count, on a PF row) }].
export function candidateRows(list, expanded) {
    const byAddress = new Map(list.map(c => [c.pci_address, c]));
    const vfsOf = new Map();
    for (const c of list) {
        if (c.physfn && byAddress.has(c.physfn)) {
            if (!vfsOf.has(c.physfn))
                vfsOf.set(c.physfn, []);
            vfsOf.get(c.physfn).push(c);
        }
    }
    const rows = [];
    for (const c of list) {
        if (c.physfn && byAddress.has(c.physfn))
            continue;
        const vfs = vfsOf.get(c.pci_address) || [];
        rows.push({ fn: c, vfs: vfs.length });
        if (expanded && expanded.has(c.pci_address))
            for (const vf of vfs)
                rows.push({ fn: vf, vfs: 0 });
    }
    return rows;
}

// Device.Type in words.
export function typeText(type) {
    return { gpu: "GPU", pci: "PCI device" }[type] || String(type || "");
}
