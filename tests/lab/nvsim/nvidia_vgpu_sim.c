// SPDX-License-Identifier: GPL-2.0
/*
 * nvidia_vgpu_sim: a lab-only simulator of NVIDIA's documented vendor-VFIO vGPU sysfs ABI, for hostdev's tests;
 * not NVIDIA code, never installed.  It is built out of tree by tests/lab/prepare.sh and loaded only inside the
 * lab VM (tests/lab/README.md, "The vGPU simulator").
 *
 * What it models (NVIDIA vGPU 17+ on kernels without the mdev bus):
 *  - the "GPU" PFs named by pfs= are bound to this driver (named "nvidia"); writing sriov_numvfs enables VFs
 *    (pci_enable_sriov), which the kernel probes according to the PF's sriov_drivers_autoprobe, like any
 *    id-matched driver; the VFs of our PFs are bound to this driver too, never to nvme;
 *  - each VF is a vfio-pci-core device (/dev/vfio/<group>), which cannot be opened while the VF has no vGPU type
 *    (ENODEV); the driver has no bind/unbind files, so a VF cannot be moved to vfio-pci;
 *  - /sys/bus/pci/devices/<VF>/nvidia/creatable_vgpu_types (0444): "ID    : vGPU Name" and one "%-5d : %s" line
 *    per type that still fits in the PF's free framebuffer (only the header on a VF that has a type);
 *  - /sys/bus/pci/devices/<VF>/nvidia/current_vgpu_type (0644): "0" or the type id; writing an id creates the
 *    vGPU (EPERM: the VF has one; EINVAL: unknown id; ENOSPC: does not fit), writing 0 releases it (EPERM: none;
 *    EBUSY: the VFIO device is open);
 *  - sriov_numvfs=0 is refused (EBUSY) while a VF has a type or is open.
 * What it does not model: the homogeneous/placement rules, gpu_instance_id, placement_id, vgpu_params, and any
 * actual GPU: the VFs stay QEMU NVMe functions.
 *
 * It must be loaded before nvme (it matches the PFs' vendor:device by dynamic id and refuses every device that
 * is neither a listed PF nor a VF of one): the kernel tries drivers in the order they registered.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>
#include <linux/version.h>

#define SIM_DRIVER_NAME "nvidia"
#define SIM_MAX_PFS 8

static char *pfs = "";
module_param(pfs, charp, 0444);
MODULE_PARM_DESC(pfs, "comma-separated PCI addresses of the SR-IOV PFs that play GPUs, e.g. 0000:02:00.0,0000:03:00.0");
static unsigned int fb_mb = 8192;
module_param(fb_mb, uint, 0444);
MODULE_PARM_DESC(fb_mb, "framebuffer of each simulated GPU in MB (default 8192: two 4Q vGPUs fill one)");

/* The type catalogue: modelled on an NVIDIA L40S (Q-series profiles); ids chosen for the lab. */
struct sim_type {
	unsigned int id;
	const char *name;
	unsigned int fb_mb;
};
static const struct sim_type sim_types[] = {
	{ 1147, "NVIDIA L40S-1Q", 1024 },
	{ 1148, "NVIDIA L40S-2Q", 2048 },
	{ 1150, "NVIDIA L40S-4Q", 4096 },
	{ 1152, "NVIDIA L40S-8Q", 8192 },
};

struct sim_pf {
	struct pci_dev *pdev;
	unsigned int used_mb;	/* framebuffer taken by the vGPUs of its VFs */
	unsigned int nr_typed;	/* VFs with a type */
	unsigned int nr_open;	/* VFs whose VFIO device is open */
	bool disabling;		/* sriov_numvfs=0 in progress: no new vGPU */
};

struct sim_vf {
	struct vfio_pci_core_device core;	/* first: vfio_alloc_device wants it at offset 0 */
	struct sim_pf *pf;
	const struct sim_type *type;		/* NULL: no vGPU */
	bool open;
};

static DEFINE_MUTEX(sim_lock);	/* every sim_pf and sim_vf field above */
static char sim_pf_names[SIM_MAX_PFS][16];
static int sim_nr_pf_names;
static struct pci_driver sim_driver;

static struct sim_vf *sim_vf_of(struct device *dev)
{
	return container_of((struct vfio_pci_core_device *)dev_get_drvdata(dev), struct sim_vf, core);
}

static const struct sim_type *sim_type_find(unsigned int id)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(sim_types); i++)
		if (sim_types[i].id == id)
			return &sim_types[i];
	return NULL;
}

/* ---- /sys/bus/pci/devices/<VF>/nvidia/ ---- */

static ssize_t creatable_vgpu_types_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sim_vf *vf = sim_vf_of(dev);
	int i, len = sysfs_emit(buf, "ID    : vGPU Name\n");

	mutex_lock(&sim_lock);
	for (i = 0; !vf->type && i < ARRAY_SIZE(sim_types); i++)
		if (sim_types[i].fb_mb <= fb_mb - vf->pf->used_mb)
			len += sysfs_emit_at(buf, len, "%-5u : %s\n", sim_types[i].id, sim_types[i].name);
	mutex_unlock(&sim_lock);
	return len;
}
static DEVICE_ATTR_RO(creatable_vgpu_types);

static ssize_t current_vgpu_type_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sim_vf *vf = sim_vf_of(dev);
	unsigned int id;

	mutex_lock(&sim_lock);
	id = vf->type ? vf->type->id : 0;
	mutex_unlock(&sim_lock);
	return sysfs_emit(buf, "%u\n", id);
}

static ssize_t current_vgpu_type_store(struct device *dev, struct device_attribute *attr, const char *buf,
				       size_t count)
{
	struct sim_vf *vf = sim_vf_of(dev);
	struct sim_pf *pf = vf->pf;
	const struct sim_type *t;
	unsigned int id;
	int ret = kstrtouint(buf, 10, &id);

	if (ret)
		return ret;
	mutex_lock(&sim_lock);
	if (id == 0) {
		if (!vf->type) {
			ret = -EPERM;
		} else if (vf->open) {
			ret = -EBUSY;
		} else {
			pci_info(to_pci_dev(dev), "vGPU %u (%s) released\n", vf->type->id, vf->type->name);
			pf->used_mb -= vf->type->fb_mb;
			pf->nr_typed--;
			vf->type = NULL;
		}
	} else if (vf->type) {
		ret = -EPERM;
	} else if (!(t = sim_type_find(id))) {
		ret = -EINVAL;
	} else if (pf->disabling) {
		ret = -EBUSY;
	} else if (t->fb_mb > fb_mb - pf->used_mb) {
		ret = -ENOSPC;
	} else {
		vf->type = t;
		pf->used_mb += t->fb_mb;
		pf->nr_typed++;
		pci_info(to_pci_dev(dev), "vGPU %u (%s, %u MB) created, %u of %u MB used\n", t->id, t->name,
			 t->fb_mb, pf->used_mb, fb_mb);
	}
	mutex_unlock(&sim_lock);
	return ret ? ret : count;
}
static DEVICE_ATTR_RW(current_vgpu_type);

static struct attribute *sim_vf_attrs[] = {
	&dev_attr_creatable_vgpu_types.attr,
	&dev_attr_current_vgpu_type.attr,
	NULL,
};
static const struct attribute_group sim_vf_group = {
	.name = "nvidia",
	.attrs = sim_vf_attrs,
};

/* ---- the VF's VFIO device: vfio-pci-core, refused without a vGPU type ---- */

static int sim_vf_open_device(struct vfio_device *core_vdev)
{
	struct sim_vf *vf = container_of(core_vdev, struct sim_vf, core.vdev);
	int ret;

	mutex_lock(&sim_lock);	/* held throughout: no release between the check and the open */
	if (!vf->type) {
		ret = -ENODEV;
		goto out;
	}
	ret = vfio_pci_core_enable(&vf->core);
	if (ret)
		goto out;
	vfio_pci_core_finish_enable(&vf->core);
	vf->open = true;
	vf->pf->nr_open++;
out:
	mutex_unlock(&sim_lock);
	return ret;
}

static void sim_vf_close_device(struct vfio_device *core_vdev)
{
	struct sim_vf *vf = container_of(core_vdev, struct sim_vf, core.vdev);

	vfio_pci_core_close_device(core_vdev);
	mutex_lock(&sim_lock);
	vf->open = false;
	vf->pf->nr_open--;
	mutex_unlock(&sim_lock);
}

static const struct vfio_device_ops sim_vfio_ops = {
	.name		= "nvidia-vgpu-sim",
	.init		= vfio_pci_core_init_dev,
	.release	= vfio_pci_core_release_dev,
	.open_device	= sim_vf_open_device,
	.close_device	= sim_vf_close_device,
	.ioctl		= vfio_pci_core_ioctl,
	.device_feature	= vfio_pci_core_ioctl_feature,
	.read		= vfio_pci_core_read,
	.write		= vfio_pci_core_write,
	.mmap		= vfio_pci_core_mmap,
	.request	= vfio_pci_core_request,
	.match		= vfio_pci_core_match,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	/* NULL when the kernel has no CONFIG_IOMMUFD (Debian's 6.12): then there is no VFIO cdev either */
	.bind_iommufd	= vfio_iommufd_physical_bind,
	.unbind_iommufd	= vfio_iommufd_physical_unbind,
	.attach_ioas	= vfio_iommufd_physical_attach_ioas,
#endif
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
	.detach_ioas	= vfio_iommufd_physical_detach_ioas,
#endif
};

static int sim_vf_probe(struct pci_dev *pdev)
{
	struct pci_dev *physfn = pci_physfn(pdev);
	struct sim_vf *vf;
	int ret;

	if (physfn->dev.driver != &sim_driver.driver)
		return -ENODEV;	/* a VF of another PF (e.g. the lab's own NVMe): leave it to nvme */
	vf = vfio_alloc_device(sim_vf, core.vdev, &pdev->dev, &sim_vfio_ops);
	if (IS_ERR(vf))
		return PTR_ERR(vf);
	vf->pf = pci_get_drvdata(physfn);
	dev_set_drvdata(&pdev->dev, &vf->core);
	ret = vfio_pci_core_register_device(&vf->core);
	if (ret)
		goto out_put;
	ret = sysfs_create_group(&pdev->dev.kobj, &sim_vf_group);
	if (ret)
		goto out_unregister;
	return 0;

out_unregister:
	vfio_pci_core_unregister_device(&vf->core);
out_put:
	vfio_put_device(&vf->core.vdev);
	return ret;
}

static void sim_vf_remove(struct pci_dev *pdev)
{
	struct sim_vf *vf = sim_vf_of(&pdev->dev);

	sysfs_remove_group(&pdev->dev.kobj, &sim_vf_group);
	vfio_pci_core_unregister_device(&vf->core);	/* waits until the device is closed */
	mutex_lock(&sim_lock);
	if (vf->type) {
		vf->pf->used_mb -= vf->type->fb_mb;
		vf->pf->nr_typed--;
	}
	mutex_unlock(&sim_lock);
	vfio_put_device(&vf->core.vdev);
}

/* ---- the PF ("GPU") ---- */

static bool sim_pf_listed(struct pci_dev *pdev)
{
	int i;

	for (i = 0; i < sim_nr_pf_names; i++)
		if (!strcmp(sim_pf_names[i], pci_name(pdev)))
			return true;
	return false;
}

static int sim_pf_probe(struct pci_dev *pdev)
{
	struct sim_pf *pf;

	if (!sim_pf_listed(pdev) || !pdev->is_physfn)
		return -ENODEV;
	pf = devm_kzalloc(&pdev->dev, sizeof(*pf), GFP_KERNEL);
	if (!pf)
		return -ENOMEM;
	pf->pdev = pdev;
	pci_set_drvdata(pdev, pf);
	/*
	 * Runtime PM stays off on the PF (the probe's usage count is kept): vfio-pci-core sets this driver's pm ops
	 * for its VFs, and they expect a vfio_pci_core_device as drvdata.
	 */
	pci_info(pdev, "simulated GPU (nvidia_vgpu_sim): %u MB framebuffer, up to %d VFs\n", fb_mb,
		 pci_sriov_get_totalvfs(pdev));
	return 0;
}

static int sim_sriov_configure(struct pci_dev *pdev, int num_vfs)
{
	struct sim_pf *pf = pci_get_drvdata(pdev);
	int ret;

	if (num_vfs) {
		ret = pci_enable_sriov(pdev, num_vfs);
		return ret ? ret : num_vfs;
	}
	mutex_lock(&sim_lock);
	if (pf->nr_typed || pf->nr_open) {
		pci_info(pdev, "VFs busy (%u with a vGPU, %u open): SR-IOV stays enabled\n", pf->nr_typed,
			 pf->nr_open);
		mutex_unlock(&sim_lock);
		return -EBUSY;
	}
	pf->disabling = true;
	mutex_unlock(&sim_lock);
	pci_disable_sriov(pdev);
	mutex_lock(&sim_lock);
	pf->disabling = false;
	mutex_unlock(&sim_lock);
	return 0;
}

static int sim_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	return pdev->is_virtfn ? sim_vf_probe(pdev) : sim_pf_probe(pdev);
}

static void sim_remove(struct pci_dev *pdev)
{
	if (pdev->is_virtfn)
		sim_vf_remove(pdev);
	else
		pci_disable_sriov(pdev);
}

static struct pci_driver sim_driver = {
	.name			= SIM_DRIVER_NAME,
	.id_table		= NULL,	/* dynamic ids, from the PFs named by pfs= */
	.probe			= sim_probe,
	.remove			= sim_remove,
	.sriov_configure	= sim_sriov_configure,
	.driver_managed_dma	= true,
	/* No bind/unbind files: a VF cannot leave this driver for vfio-pci (nor a PF for another driver). */
	.driver.suppress_bind_attrs = true,
};

/* Match the vendor:device of each named PF and of its VFs (read from its SR-IOV capability). */
static void sim_add_ids(void)
{
	u32 added[2 * SIM_MAX_PFS];
	int i, j, k, n = 0;

	for (i = 0; i < sim_nr_pf_names; i++) {
		unsigned int dom, bus, slot, fn;
		struct pci_dev *pdev;
		u16 ids[2] = { 0, 0 };
		int pos;

		if (sscanf(sim_pf_names[i], "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4 ||
		    !(pdev = pci_get_domain_bus_and_slot(dom, bus, PCI_DEVFN(slot, fn)))) {
			pr_warn("nvidia_vgpu_sim: no PCI device %s\n", sim_pf_names[i]);
			continue;
		}
		pos = pci_find_ext_capability(pdev, PCI_EXT_CAP_ID_SRIOV);
		if (!pos)
			pci_warn(pdev, "nvidia_vgpu_sim: no SR-IOV capability, not a GPU for the simulator\n");
		else
			pci_read_config_word(pdev, pos + PCI_SRIOV_VF_DID, &ids[1]);
		ids[0] = pdev->device;
		if (pdev->dev.driver && pdev->dev.driver != &sim_driver.driver)
			pci_warn(pdev, "nvidia_vgpu_sim: already bound to %s (load nvidia_vgpu_sim before it)\n",
				 pdev->dev.driver->name);
		for (k = 0; k < 2 && pos; k++) {
			u32 key = (u32)pdev->vendor << 16 | ids[k];

			for (j = 0; j < n && added[j] != key; j++)
				;
			if (j < n)
				continue;
			added[n++] = key;
			if (pci_add_dynid(&sim_driver, pdev->vendor, ids[k], PCI_ANY_ID, PCI_ANY_ID, 0, 0, 0))
				pr_warn("nvidia_vgpu_sim: cannot add id %04x:%04x\n", pdev->vendor, ids[k]);
		}
		pci_dev_put(pdev);
	}
}

static int __init sim_init(void)
{
	char *list, *p, *name;
	int ret;

	list = kstrdup(pfs, GFP_KERNEL);
	if (!list)
		return -ENOMEM;
	p = list;
	while ((name = strsep(&p, ",")) && sim_nr_pf_names < SIM_MAX_PFS)
		if (*name)
			strscpy(sim_pf_names[sim_nr_pf_names++], strim(name), sizeof(sim_pf_names[0]));
	kfree(list);
	if (!sim_nr_pf_names)
		pr_warn("nvidia_vgpu_sim: no PFs named (pfs=): nothing to simulate\n");
	ret = pci_register_driver(&sim_driver);
	if (ret)
		return ret;
	sim_add_ids();	/* each added id probes the matching devices at once */
	return 0;
}

static void __exit sim_exit(void)
{
	pci_unregister_driver(&sim_driver);
}

module_init(sim_init);
module_exit(sim_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Lab-only simulator of NVIDIA's documented vendor-VFIO vGPU sysfs ABI, for hostdev's tests; "
		   "not NVIDIA code, never installed");
