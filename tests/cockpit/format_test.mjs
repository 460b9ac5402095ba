// Unit tests of cockpit/format.js, the page's pure helpers (node --test).
import assert from "node:assert/strict";
import test from "node:test";

import * as fmt from "../../cockpit/format.js";

test("names as hostdevd accepts them", () => {
    assert.ok(fmt.validName("gpu0"));
    assert.ok(fmt.validName("vm-1.test_a"));
    assert.ok(!fmt.validName("g"), "one character is too short");
    assert.ok(!fmt.validName("-gpu"));
    assert.ok(!fmt.validName("gpu 0"));
    assert.ok(!fmt.validName(""));
    assert.equal(fmt.autoName("0000:01:00.0"), "pci-0000-01-00-0");
});

test("errors: hostdevd's names shortened, the rest kept", () => {
    assert.deepEqual(fmt.describeError({ name: "org.hostdev.Passthrough1.Error.NotAuthorized", message: "uid 4711 ..." }),
                     { short: "NotAuthorized", name: "org.hostdev.Passthrough1.Error.NotAuthorized", message: "uid 4711 ..." });
    assert.equal(fmt.describeError({ name: "org.freedesktop.DBus.Error.ServiceUnknown", message: "x" }).short,
                 "org.freedesktop.DBus.Error.ServiceUnknown");
    assert.deepEqual(fmt.describeError({ problem: "access-denied", message: "Not permitted" }),
                     { short: "access-denied", name: "", message: "Not permitted" });
    assert.equal(fmt.describeError(new Error("boom")).message, "boom");
    assert.equal(fmt.describeError({ problem: "not-found", message: "not-found" }).message, "",
                 "a message that only repeats the problem code is left out");
});

test("hypervisor arguments quoted for a shell", () => {
    assert.equal(fmt.commandLine(["-device", "vfio-pci,host=0000:01:00.0"]), "-device vfio-pci,host=0000:01:00.0");
    assert.equal(fmt.commandLine(["--device", "path=/sys/bus/pci/devices/0000:01:00.0/"]),
                 "--device path=/sys/bus/pci/devices/0000:01:00.0/");
    assert.equal(fmt.shellQuote("a b"), "'a b'");
    assert.equal(fmt.shellQuote("it's"), "'it'\\''s'");
    assert.equal(fmt.shellQuote(""), "''");
    assert.equal(fmt.shellQuote("$(rm -rf /)"), "'$(rm -rf /)'");
    assert.equal(fmt.commandLine([]), "");
    assert.equal(fmt.commandLine(undefined), "");
});

test("sizes", () => {
    assert.equal(fmt.formatMiB(1024), "1 GiB");
    assert.equal(fmt.formatMiB(49152), "48 GiB");
    assert.equal(fmt.formatMiB(512), "512 MiB");
    assert.equal(fmt.formatMiB(1536), "1.5 GiB");
    assert.equal(fmt.formatKiB(2048), "2 MiB");
    assert.equal(fmt.formatKiB(1048576), "1 GiB");
    assert.equal(fmt.formatKiB(4), "4 KiB");
});

test("host report texts", () => {
    assert.equal(fmt.hugepagesText({ hugepages_total: 0 }), "None reserved");
    assert.equal(fmt.hugepagesText({ hugepages_total: 1024, hugepages_free: 1000, hugepage_size_kb: 2048 }),
                 "1000 of 1024 free, 2 MiB each");
    assert.equal(fmt.gpuModeText({ gpu_mode: "vgpu", gpu_count: 2, mdev_parent_count: 64 }),
                 "vGPU (2 GPU functions, 64 vGPU parents)");
    assert.equal(fmt.gpuModeText({ gpu_mode: "passthrough", gpu_count: 1, mdev_parent_count: 0 }),
                 "Whole-GPU passthrough (1 GPU function)");
    assert.equal(fmt.gpuModeText({ gpu_mode: "none" }), "None", "older daemons without the counts");
    assert.equal(fmt.gpuModeText({ gpu_mode: "vgpu", gpu_framework: "vendor-vfio", gpu_count: 18,
                                   mdev_parent_count: 0, vendor_vf_count: 16 }),
                 "vGPU on NVIDIA vendor-specific VFIO (18 GPU functions, 16 vendor-VFIO VFs)");
    assert.equal(fmt.gpuModeText({ gpu_mode: "vgpu", gpu_framework: "mdev+vendor-vfio", gpu_count: 1,
                                   mdev_parent_count: 1, vendor_vf_count: 1 }),
                 "vGPU on mediated devices and NVIDIA vendor-specific VFIO (1 GPU function, 1 vGPU parent, " +
                 "1 vendor-VFIO VF)");
    assert.deepEqual(fmt.problemsWithHints({ problems: ["a", "b"], hints: ["fix a"] }),
                     [{ problem: "a", hint: "fix a" }, { problem: "b", hint: "" }]);
});

test("instance state", () => {
    assert.deepEqual(fmt.instanceState({ gpuProfile: "", mdevUuid: "" }, [{ name: "gpu0", boundToVfio: true }]),
                     { ok: true, text: "Ready" });
    assert.equal(fmt.instanceState({}, [{ name: "gpu0", boundToVfio: false }, { name: "nic0", boundToVfio: false }]).text,
                 "Not ready: gpu0, nic0 not on vfio-pci");
    assert.equal(fmt.instanceState({ gpuProfile: "NVIDIA L40S-1Q", mdevUuid: "" }, []).text, "Not ready: no vGPU");
    assert.equal(fmt.instanceState({ gpuProfile: "NVIDIA L40S-1Q", mdevUuid: "", vgpuVf: "0000:a2:00.4" }, []).text,
                 "Ready", "a vendor-VFIO vGPU has a VF, no mdev");
    assert.deepEqual(fmt.instanceState({ state: "degraded", stateReason: "gpu0 (0000:01:00.0) is missing" }, []),
                     { ok: false, text: "Degraded: gpu0 (0000:01:00.0) is missing" });
    assert.equal(fmt.instanceState({ state: "restoring" }, []).text, "Restoring after a reboot");
    assert.equal(fmt.instanceState({ state: "active" }, []).text, "Ready");
});

test("owners by uid", () => {
    const users = fmt.parsePasswd("root:x:0:0:root:/root:/bin/bash\nhdtest:x:4711:4711::/nonexistent:/usr/sbin/nologin\n\nbad");
    assert.equal(users.get(0), "root");
    assert.equal(fmt.ownerText(4711, users), "hdtest (4711)");
    assert.equal(fmt.ownerText(1234, users), "uid 1234");
});

test("times and paths", () => {
    assert.equal(fmt.formatTime(1700000000000000), "2023-11-14 22:13:20 UTC");
    assert.equal(fmt.formatTime(0), "");
    assert.equal(fmt.lastElement("/org/hostdev/Passthrough1/devices/abc"), "abc");
});

test("variants from cockpit.js to plain values", () => {
    const report = {
        iommu_enabled: { t: "b", v: true },
        problems: { t: "as", v: ["p"] },
        profiles: { t: "aa{sv}", v: [{ name: { t: "s", v: "NVIDIA L40S-1Q" }, available: { t: "u", v: 64 } }] },
        nested: { t: "a{sv}", v: { inner: { t: "v", v: { t: "s", v: "x" } } } },
    };
    assert.deepEqual(fmt.dictFromVariants(report), {
        iommu_enabled: true,
        problems: ["p"],
        profiles: [{ name: "NVIDIA L40S-1Q", available: 64 }],
        nested: { inner: "x" },
    });
});

test("PCI classes in words", () => {
    assert.equal(fmt.classText("0x030200"), "3D controller");
    assert.equal(fmt.classText("0x040300"), "Audio device");
    assert.equal(fmt.classText("0x00ff00"), "class 0x00ff00");
    assert.equal(fmt.classText(undefined), "");
});

test("virtual functions folded under their physical function", () => {
    const list = [
        { pci_address: "0000:a2:00.0" },
        { pci_address: "0000:a2:00.4", physfn: "0000:a2:00.0" },
        { pci_address: "0000:a2:00.5", physfn: "0000:a2:00.0" },
        { pci_address: "0000:b0:00.1", physfn: "0000:b0:00.0" }, // its PF is not in the list: shown on its own
        { pci_address: "0000:c1:00.0" },
    ];
    assert.deepEqual(fmt.candidateRows(list, new Set()).map(r => [r.fn.pci_address, r.vfs]),
                     [["0000:a2:00.0", 2], ["0000:b0:00.1", 0], ["0000:c1:00.0", 0]]);
    assert.deepEqual(fmt.candidateRows(list, new Set(["0000:a2:00.0"])).map(r => r.fn.pci_address),
                     ["0000:a2:00.0", "0000:a2:00.4", "0000:a2:00.5", "0000:b0:00.1", "0000:c1:00.0"]);
});

test("device types in words", () => {
    assert.equal(fmt.typeText("gpu"), "GPU");
    assert.equal(fmt.typeText("pci"), "PCI device");
    assert.equal(fmt.typeText("usb"), "usb");
});
