/* c-reader: the anchor of `hostdevctl inspect`: a minimal C reader of the same PCI attributes, one openat per
 * attribute relative to a device dirfd, one readlinkat per link, printed one line per function.
 *   c-reader ROOT      (reads every function of ROOT/sys/bus/pci/devices)
 * Test code only (tests/bench/inspect-bench.sh compares the two). */
#define _GNU_SOURCE /* O_PATH */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const attrs[] = {"vendor",          "device",    "subsystem_vendor", "subsystem_device",
                                    "class",           "revision",  "driver_override",  "numa_node",
                                    "reset_method",    "sriov_totalvfs", "sriov_numvfs"};
static const char *const links[] = {"iommu_group", "driver", "physfn"};

static void attr(int dir, const char *name, char *out, size_t size) {
  out[0] = '\0';
  const int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return;
  const ssize_t n = read(fd, out, size - 1);
  close(fd);
  out[n > 0 ? n : 0] = '\0';
  char *nl = strchr(out, '\n');
  if (nl)
    *nl = '\0';
}

static const char *link_name(int dir, const char *name, char *out, size_t size) {
  const ssize_t n = readlinkat(dir, name, out, size - 1);
  out[n > 0 ? n : 0] = '\0';
  const char *slash = strrchr(out, '/');
  return slash ? slash + 1 : out;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: c-reader ROOT\n");
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/sys/bus/pci/devices", argv[1]);
  const int devices = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = devices < 0 ? NULL : fdopendir(devices);
  if (!d) {
    perror(path);
    return 1;
  }
  unsigned count = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    const int dev = openat(devices, e->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dev < 0)
      continue;
    printf("%s", e->d_name);
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; ++i) {
      char v[256];
      attr(dev, attrs[i], v, sizeof v);
      printf(" %s=%s", attrs[i], v);
    }
    for (size_t i = 0; i < sizeof links / sizeof links[0]; ++i) {
      char v[4096];
      printf(" %s=%s", links[i], link_name(dev, links[i], v, sizeof v));
    }
    printf("\n");
    close(dev);
    ++count;
  }
  closedir(d);
  fprintf(stderr, "c-reader: %u functions\n", count);
  return 0;
}
