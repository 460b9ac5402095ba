/* uevent-latency: how long a change made by hand in sysfs takes to reach the bus (the lab measures; it asserts
 * nothing about time). Inside the lab VM, as root, with hostdevd serving and ADDR registered as OBJECT:
 *   uevent-latency ADDR OBJECT ROUNDS
 * Each round binds ADDR to vfio-pci by hand (driver_override, unbind, drivers_probe), waits for the Device
 * object's PropertiesChanged with Driver "vfio-pci", then gives it back the same way and waits for its driver
 * again. The kernel sends the bind's uevent at the end of the drivers_probe write, after the driver's probe: the
 * figure is from the write's return to the signal's arrival (the write's own time, the driver's probe, is printed
 * beside it). Prints each and the median. */
#include <systemd/sd-bus.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void put(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, value, strlen(value)) < 0) {
    fprintf(stderr, "uevent-latency: writing '%s' to %s: %s\n", value, path, strerror(errno));
    exit(1);
  }
  close(fd);
}

static void driver_of(const char *addr, char *out, size_t size) {
  char link[PATH_MAX], target[PATH_MAX];
  snprintf(link, sizeof link, "/sys/bus/pci/devices/%s/driver", addr);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) {
    out[0] = '\0';
    return;
  }
  target[n] = '\0';
  const char *slash = strrchr(target, '/');
  const char *name = slash ? slash + 1 : target;
  if (strlen(name) >= size) {
    out[0] = '\0';
    return;
  }
  memcpy(out, name, strlen(name) + 1);
}

/* The Driver value in a PropertiesChanged of the Device interface, or NULL. */
static const char *changed_driver(sd_bus_message *m) {
  const char *iface = NULL;
  if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, "org.hostdev.Passthrough1.Device") != 0)
    return NULL;
  if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
    return NULL;
  while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
    const char *key = NULL;
    if (sd_bus_message_read(m, "s", &key) < 0)
      return NULL;
    if (strcmp(key, "Driver") == 0) {
      const char *value = NULL;
      if (sd_bus_message_read(m, "v", "s", &value) < 0)
        return NULL;
      return value;
    }
    if (sd_bus_message_skip(m, "v") < 0 || sd_bus_message_exit_container(m) < 0)
      return NULL;
  }
  return NULL;
}

/* Waits (at most 10 s) for Driver == want on the bus; returns the time it arrived, or -1. */
static double wait_for(sd_bus *bus, const char *want) {
  const double deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    sd_bus_message *m = NULL;
    int r = sd_bus_process(bus, &m);
    if (r < 0)
      return -1;
    if (m) {
      const double at = now_ms();
      const char *driver = changed_driver(m);
      const int hit = driver && strcmp(driver, want) == 0;
      sd_bus_message_unref(m);
      if (hit)
        return at;
      continue;
    }
    if (r == 0)
      sd_bus_wait(bus, 100000);
  }
  return -1;
}

static int by_value(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: uevent-latency ADDR OBJECT ROUNDS\n");
    return 2;
  }
  const char *addr = argv[1], *object = argv[2];
  const int rounds = atoi(argv[3]);
  if (rounds < 1 || rounds > 100) {
    fprintf(stderr, "uevent-latency: ROUNDS must be 1..100\n");
    return 2;
  }
  char home[64];
  driver_of(addr, home, sizeof home);
  if (!home[0] || strcmp(home, "vfio-pci") == 0) {
    fprintf(stderr, "uevent-latency: %s must start on its own driver\n", addr);
    return 1;
  }
  sd_bus *bus = NULL;
  int r = sd_bus_open_system(&bus);
  if (r < 0) {
    fprintf(stderr, "uevent-latency: system bus: %s\n", strerror(-r));
    return 1;
  }
  char match[512];
  snprintf(match, sizeof match,
           "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='%s'", object);
  r = sd_bus_add_match(bus, NULL, match, NULL, NULL);
  if (r < 0) {
    fprintf(stderr, "uevent-latency: match: %s\n", strerror(-r));
    return 1;
  }
  char override[PATH_MAX], unbind_home[PATH_MAX];
  snprintf(override, sizeof override, "/sys/bus/pci/devices/%s/driver_override", addr);
  snprintf(unbind_home, sizeof unbind_home, "/sys/bus/pci/drivers/%s/unbind", home);
  double ms[200];
  int n = 0;
  for (int i = 0; i < rounds; ++i) {
    for (int back = 0; back < 2; ++back) {
      put(override, back ? "\n" : "vfio-pci");
      put(back ? "/sys/bus/pci/drivers/vfio-pci/unbind" : unbind_home, addr);
      const double t0 = now_ms();
      put("/sys/bus/pci/drivers_probe", addr);
      const double t1 = now_ms();
      const double at = wait_for(bus, back ? home : "vfio-pci");
      if (at < 0) {
        fprintf(stderr, "uevent-latency: no PropertiesChanged with Driver %s within 10 s\n", back ? home : "vfio-pci");
        return 1;
      }
      ms[n++] = at - t1;
      printf("  %s -> %s: %.1f ms after the write (the write, the driver's probe: %.1f ms)\n", back ? "vfio-pci" : home,
             back ? home : "vfio-pci", at - t1, t1 - t0);
    }
  }
  qsort(ms, (size_t)n, sizeof ms[0], by_value);
  printf(
      "a bind by hand to PropertiesChanged (real kernel, after the write): median %.1f ms of %d, min %.1f, max %.1f\n",
      ms[n / 2], n, ms[0], ms[n - 1]);
  sd_bus_unref(bus);
  return 0;
}
