// SPDX-License-Identifier: GPL-2.0
/*
 * holdvf: open the VFIO device of a PCI function the way a VM does, for the lab's tests (tests/lab/README.md).
 *
 *   holdvf ADDR         open /dev/vfio/vfio (a container) and /dev/vfio/<ADDR's group>, set the container and the
 *                       type1 IOMMU, get the device fd (VFIO_GROUP_GET_DEVICE_FD), print
 *                       "holdvf: holding ADDR (group G)" and wait until killed (SIGTERM/SIGINT: exit 0)
 *   holdvf --try ADDR   the same, but close at once: exit 0 when the device opened
 *
 * A failing step prints "holdvf: STEP: MESSAGE (ERRNO-NAME)", e.g. "holdvf: VFIO_GROUP_GET_DEVICE_FD 0000:02:00.2:
 * No such device (ENODEV)", and exits 1; usage errors exit 2.  The group path works on every lab kernel (Debian's
 * 6.12 has no CONFIG_IOMMUFD, hence no /dev/vfio/devices/vfioN).  Built static by tests/lab/prepare.sh; in the
 * guest at /lab/bin/holdvf.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vfio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(const char *step, const char *what)
{
	int e = errno;
	const char *name = strerrorname_np(e);

	printf("holdvf: %s%s%s: %s (%s)\n", step, what ? " " : "", what ? what : "", strerror(e), name ? name : "?");
	return 1;
}

static void on_signal(int sig) { (void)sig; }

int main(int argc, char **argv)
{
	int try_only = argc == 3 && !strcmp(argv[1], "--try");
	const char *addr = argv[argc - 1];
	char link[PATH_MAX], target[PATH_MAX], path[PATH_MAX + 16];
	struct vfio_group_status status = { .argsz = sizeof(status) };
	const char *group;
	ssize_t n;
	int container, gfd, dfd;

	if (!(argc == 2 || try_only) || addr[0] == '-') {
		fprintf(stderr, "usage: holdvf [--try] PCI-ADDRESS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s/iommu_group", addr);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return fail("readlink", link);
	target[n] = '\0';
	group = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;

	container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (container < 0)
		return fail("open", "/dev/vfio/vfio");
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return fail("VFIO_GET_API_VERSION", NULL);
	snprintf(path, sizeof(path), "/dev/vfio/%s", group);
	gfd = open(path, O_RDWR | O_CLOEXEC);
	if (gfd < 0)
		return fail("open", path);
	if (ioctl(gfd, VFIO_GROUP_GET_STATUS, &status))
		return fail("VFIO_GROUP_GET_STATUS", path);
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		return fail("group not viable (another function of the group is on a host driver)", path);
	}
	if (ioctl(gfd, VFIO_GROUP_SET_CONTAINER, &container))
		return fail("VFIO_GROUP_SET_CONTAINER", path);
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) && ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU))
		return fail("VFIO_SET_IOMMU", NULL);
	dfd = ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, addr);
	if (dfd < 0)
		return fail("VFIO_GROUP_GET_DEVICE_FD", addr);
	if (try_only) {
		printf("holdvf: opened %s (group %s)\n", addr, group);
		return 0;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("holdvf: holding %s (group %s)\n", addr, group);
	pause();
	close(dfd);
	close(gfd);
	close(container);
	printf("holdvf: released %s\n", addr);
	return 0;
}
