/* bus-bench: the read figures of hostdevd against its anchors, on one sd-bus connection (C, libsystemd).
 *
 *   bus-bench [ROUNDS]      (DBUS_SYSTEM_BUS_ADDRESS: the benchmark's private bus; see bus-bench.sh)
 *   bus-bench --reads N     only N reads (every method by turns), for bus-bench.sh's strace count
 *   bus-bench --polkit N    only N rounds of the polkit figures (below), for a profile of mutations
 *   bus-bench --rss         only the RSS figure of whatever daemon owns the name (bus-bench.sh: the real hostdevd)
 *
 * For every read method: ROUNDS rounds of [the read, Peer.Ping of hostdevd, the same-size floor R<i> of
 * bench-anchor], interleaved on one connection, and their medians. Then: bus activation to first reply of
 * hostdevd and of the anchor, another connection's Ping while a big read loops, a polkit-checked call against a
 * bare CheckAuthorization (as uid 4712, hdadmin: Register, Unregister, Reconcile), and hostdevd's RSS after start and
 * after 20k reads. Prints figures; asserts nothing. Test code only. */
#include <systemd/sd-bus.h>

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOSTDEV "org.hostdev.Passthrough1"
#define ROOT "/org/hostdev/Passthrough1"
#define ANCHOR "org.hostdev.BenchAnchor"
#define ANCHOR_PATH "/org/hostdev/BenchAnchor"

static const char *const specs[] = {
    "Devices.ListAvailable",   "Devices.ListAvailable+all",       "Devices.GetGpuResources",
    "Devices.CheckHost",       "ObjectManager.GetManagedObjects", "Devices.ListDevices",
    "Instances.ListInstances", "Properties.GetAll:Devices",       "Properties.Get:Devices:Generation",
};
#define NSPECS (sizeof specs / sizeof specs[0])

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

static void die(const char *what, int r, const sd_bus_error *e) {
  fprintf(stderr, "bus-bench: %s: %s\n", what, e && e->message ? e->message : strerror(-r));
  exit(1);
}

/* One read of hostdevd by spec, the reply dropped. */
static void read_call(sd_bus *bus, const char *spec) {
  char group[64], method[64], arg[64] = "";
  const char *dot = strchr(spec, '.');
  snprintf(group, sizeof group, "%.*s", (int)(dot - spec), spec);
  snprintf(method, sizeof method, "%s", dot + 1);
  char *sep = strpbrk(method, "+:");
  if (sep) {
    snprintf(arg, sizeof arg, "%s", sep + 1);
    *sep = '\0';
  }
  sd_bus_message *m = NULL, *reply = NULL;
  sd_bus_error e = SD_BUS_ERROR_NULL;
  int r;
  if (strcmp(group, "ObjectManager") == 0) {
    r = sd_bus_message_new_method_call(bus, &m, HOSTDEV, ROOT, "org.freedesktop.DBus.ObjectManager", method);
  } else if (strcmp(group, "Properties") == 0) {
    char iface[128], prop[64] = "";
    char *colon = strchr(arg, ':');
    if (colon) {
      snprintf(prop, sizeof prop, "%s", colon + 1);
      *colon = '\0';
    }
    snprintf(iface, sizeof iface, "org.hostdev.Passthrough1.%s", arg);
    r = sd_bus_message_new_method_call(bus, &m, HOSTDEV, ROOT, "org.freedesktop.DBus.Properties", method);
    if (r >= 0)
      r = prop[0] ? sd_bus_message_append(m, "ss", iface, prop) : sd_bus_message_append(m, "s", iface);
  } else {
    char iface[128];
    snprintf(iface, sizeof iface, "org.hostdev.Passthrough1.%s", group);
    r = sd_bus_message_new_method_call(bus, &m, HOSTDEV, ROOT, iface, method);
    if (r >= 0 && strcmp(method, "ListAvailable") == 0)
      r = strcmp(arg, "all") == 0 ? sd_bus_message_append(m, "a{sv}", 1, "all", "b", 1)
                                  : sd_bus_message_append(m, "a{sv}", 0);
  }
  if (r < 0)
    die("building a call", r, NULL);
  r = sd_bus_call(bus, m, 0, &e, &reply);
  if (r < 0)
    die(spec, r, &e);
  sd_bus_message_unref(m);
  sd_bus_message_unref(reply);
}

static void simple_call(sd_bus *bus, const char *dest, const char *path, const char *iface, const char *member) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  int r = sd_bus_call_method(bus, dest, path, iface, member, &e, &reply, "");
  if (r < 0)
    die(member, r, &e);
  sd_bus_message_unref(reply);
}

static void ping(sd_bus *bus, const char *dest) { simple_call(bus, dest, "/", "org.freedesktop.DBus.Peer", "Ping"); }

static unsigned pid_of(sd_bus *bus, const char *name) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  unsigned pid = 0;
  int r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                             "GetConnectionUnixProcessID", &e, &reply, "s", name);
  if (r < 0)
    die("GetConnectionUnixProcessID", r, &e);
  sd_bus_message_read(reply, "u", &pid);
  sd_bus_message_unref(reply);
  return pid;
}

static long rss_kb(unsigned pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%u/status", pid);
  FILE *f = fopen(path, "r");
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  if (f)
    fclose(f);
  return kb;
}

/* 20 000 reads (every method by turns), then the daemon's RSS against `start` and the anchor's, if it runs. */
static void print_rss_after_reads(sd_bus *bus, unsigned pid, long start) {
  for (int i = 0; i < 20000; ++i)
    read_call(bus, specs[i % NSPECS]);
  const long after = rss_kb(pid);
  char comm[64] = "hostdevd", path[64];
  snprintf(path, sizeof path, "/proc/%u/comm", pid);
  FILE *f = fopen(path, "r");
  if (f && fgets(comm, sizeof comm, f))
    comm[strcspn(comm, "\n")] = '\0';
  if (f)
    fclose(f);
  printf("%s RSS: %ld kB after start, %ld kB after 20000 reads", comm, start, after);
  sd_bus_message *reply = NULL;
  if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                         NULL, &reply, "s", ANCHOR) >= 0) {
    int has = 0;
    sd_bus_message_read(reply, "b", &has);
    if (has)
      printf(" (anchor: %ld kB)", rss_kb(pid_of(bus, ANCHOR)));
    sd_bus_message_unref(reply);
  }
  printf("\n");
}

static sd_bus *open_bus(void) {
  sd_bus *bus = NULL;
  int r = sd_bus_open_system(&bus);
  if (r < 0)
    die("connecting to the bus", r, NULL);
  return bus;
}

/* A function no device record names (ListAvailable's registered is "/") that Register takes, for the Register
   figure: a GPU when there is one, else any function but a bridge (class 0x06...: bridges stay with the host).
   Its address in `out`, "" when there is none. */
static void free_function(sd_bus *bus, char *out, size_t size) {
  sd_bus_message *reply = NULL;
  sd_bus_error e = SD_BUS_ERROR_NULL;
  char other[64] = "";
  out[0] = '\0';
  if (sd_bus_call_method(bus, HOSTDEV, ROOT, "org.hostdev.Passthrough1.Devices", "ListAvailable", &e, &reply, "a{sv}",
                         1, "all", "b", 1) < 0)
    die("ListAvailable", -EIO, &e);
  sd_bus_message_enter_container(reply, 'a', "a{sv}");
  while (out[0] == '\0' && sd_bus_message_enter_container(reply, 'a', "{sv}") > 0) {
    const char *address = NULL, *registered = NULL, *class = NULL;
    int gpu = 0;
    while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
      const char *key = NULL, *contents = NULL;
      char type = 0;
      sd_bus_message_read(reply, "s", &key);
      sd_bus_message_peek_type(reply, &type, &contents);
      if (strcmp(key, "pci_address") == 0 && strcmp(contents, "s") == 0)
        sd_bus_message_read(reply, "v", "s", &address);
      else if (strcmp(key, "registered") == 0 && strcmp(contents, "o") == 0)
        sd_bus_message_read(reply, "v", "o", &registered);
      else if (strcmp(key, "class") == 0 && strcmp(contents, "s") == 0)
        sd_bus_message_read(reply, "v", "s", &class);
      else if (strcmp(key, "is_gpu") == 0 && strcmp(contents, "b") == 0)
        sd_bus_message_read(reply, "v", "b", &gpu);
      else
        sd_bus_message_skip(reply, "v");
      sd_bus_message_exit_container(reply);
    }
    sd_bus_message_exit_container(reply);
    if (!address || !registered || strcmp(registered, "/") != 0 || (class && strncmp(class, "0x06", 4) == 0))
      continue;
    if (gpu)
      snprintf(out, size, "%s", address);
    else if (other[0] == '\0')
      snprintf(other, sizeof other, "%s", address);
  }
  if (out[0] == '\0')
    snprintf(out, size, "%s", other);
  sd_bus_message_unref(reply);
}

/* The polkit figures, as hdadmin (uid 4712, group hostdev: the example rule allows it), each round: a bare
   CheckAuthorization of manage-devices for its own bus name, a polkit-checked Register of `address` (when there
   is one), its Unregister, and a polkit-checked Reconcile. Their medians in `out` (0: not measured). */
enum { PK_CHECK, PK_REGISTER, PK_UNREGISTER, PK_RECONCILE, PK_N };
static void polkit_figures(int rounds, const char *address, double out[PK_N]) {
  sd_bus *bus = open_bus();
  const char *me = NULL;
  sd_bus_get_unique_name(bus, &me);
  double *t[PK_N];
  for (int k = 0; k < PK_N; ++k)
    t[k] = calloc((size_t)rounds, sizeof *t[k]);
  for (int i = 0; i < rounds; ++i) {
    sd_bus_message *m = NULL, *reply = NULL;
    sd_bus_error e = SD_BUS_ERROR_NULL;
    double t0 = now_us();
    sd_bus_message_new_method_call(bus, &m, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                                   "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
    sd_bus_message_append(m, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", me,
                          "org.hostdev.passthrough1.manage-devices", 0, 0, "");
    if (sd_bus_call(bus, m, 0, &e, &reply) < 0)
      die("CheckAuthorization", -EIO, &e);
    t[PK_CHECK][i] = now_us() - t0;
    sd_bus_message_unref(m);
    sd_bus_message_unref(reply);
    if (address[0] != '\0') {
      const char *path = NULL;
      t0 = now_us();
      if (sd_bus_call_method(bus, HOSTDEV, ROOT, "org.hostdev.Passthrough1.Devices", "Register", &e, &reply, "ssa{sv}",
                             "", address, 0) < 0 ||
          sd_bus_message_read(reply, "o", &path) < 0)
        die("Register as hdadmin", -EIO, &e);
      t[PK_REGISTER][i] = now_us() - t0;
      char id[256];
      snprintf(id, sizeof id, "%s", strrchr(path, '/') + 1);
      sd_bus_message_unref(reply);
      t0 = now_us();
      if (sd_bus_call_method(bus, HOSTDEV, ROOT, "org.hostdev.Passthrough1.Devices", "Unregister", &e, &reply, "sa{sv}",
                             id, 0) < 0)
        die("Unregister as hdadmin", -EIO, &e);
      t[PK_UNREGISTER][i] = now_us() - t0;
      sd_bus_message_unref(reply);
    }
    t0 = now_us();
    if (sd_bus_call_method(bus, HOSTDEV, ROOT, "org.hostdev.Passthrough1.Devices", "Reconcile", &e, &reply, "a{sv}",
                           0) < 0)
      die("Reconcile as hdadmin", -EIO, &e);
    t[PK_RECONCILE][i] = now_us() - t0;
    sd_bus_message_unref(reply);
  }
  for (int k = 0; k < PK_N; ++k) {
    out[k] = (k == PK_REGISTER || k == PK_UNREGISTER) && address[0] == '\0' ? 0 : median(t[k], (size_t)rounds);
    free(t[k]);
  }
  sd_bus_unref(bus);
}

/* `rounds` of the polkit figures (polkit_figures) in a child that is hdadmin (uid 4712, in group hostdev 4710),
 * printed. */
static void print_polkit_figures(sd_bus *bus, int rounds) {
  char address[64];
  free_function(bus, address, sizeof address);
  int pipefd[2];
  double pk[PK_N] = {0};
  if (pipe(pipefd) != 0)
    die("pipe", -errno, NULL);
  const pid_t child = fork();
  if (child == 0) {
    const gid_t groups[] = {4710};
    close(pipefd[0]);
    if (setgroups(1, groups) != 0 || setgid(4712) != 0 || setuid(4712) != 0)
      _exit(1);
    polkit_figures(rounds, address, pk);
    if (write(pipefd[1], pk, sizeof pk) != (ssize_t)sizeof pk)
      _exit(1);
    _exit(0);
  }
  close(pipefd[1]);
  if (read(pipefd[0], pk, sizeof pk) == (ssize_t)sizeof pk) {
    printf("as hdadmin: a bare CheckAuthorization %.1f us, a polkit-allowed Register %.1f us (%.2fx)", pk[PK_CHECK],
           pk[PK_REGISTER], pk[PK_REGISTER] / pk[PK_CHECK]);
    printf(", its Unregister %.1f us (%.2fx), a Reconcile %.1f us (%.2fx)\n", pk[PK_UNREGISTER],
           pk[PK_UNREGISTER] / pk[PK_CHECK], pk[PK_RECONCILE], pk[PK_RECONCILE] / pk[PK_CHECK]);
    if (address[0] == '\0')
      printf("  (every function is registered: no Register figure)\n");
  } else {
    printf("as hdadmin: the polkit figures failed\n");
  }
  close(pipefd[0]);
  waitpid(child, NULL, 0);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--reads") == 0) { /* only reads, for strace to count what they open */
    sd_bus *bus = open_bus();
    ping(bus, HOSTDEV);
    const int n = atoi(argv[2]);
    for (int i = 0; i < n; ++i)
      read_call(bus, specs[(size_t)i % NSPECS]);
    sd_bus_unref(bus);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "--polkit") == 0) { /* only the polkit figures, for a profile of mutations */
    const int n = atoi(argv[2]);
    if (n < 1 || n > 100000) {
      fprintf(stderr, "usage: bus-bench --polkit N (N: 1 to 100000)\n");
      return 2;
    }
    sd_bus *bus = open_bus();
    ping(bus, HOSTDEV);
    print_polkit_figures(bus, n);
    sd_bus_unref(bus);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--rss") == 0) {
    sd_bus *bus = open_bus();
    ping(bus, HOSTDEV);
    const unsigned pid = pid_of(bus, HOSTDEV);
    const long start = rss_kb(pid);
    print_rss_after_reads(bus, pid, start);
    sd_bus_unref(bus);
    return 0;
  }
  const int rounds = argc > 1 ? atoi(argv[1]) : 300;
  if (rounds < 10 || rounds > 100000) {
    fprintf(stderr, "usage: bus-bench [ROUNDS: 10 to 100000]\n");
    return 2;
  }
  sd_bus *bus = open_bus();
  /* Activation to first reply: hostdevd, then the trivial anchor. */
  double t0 = now_us();
  ping(bus, HOSTDEV);
  const double act_hostdev = (now_us() - t0) / 1000;
  t0 = now_us();
  ping(bus, ANCHOR);
  const double act_anchor = (now_us() - t0) / 1000;
  const unsigned pid = pid_of(bus, HOSTDEV);
  const long rss_start = rss_kb(pid);

  /* The anchor keeps one reply of each read. */
  {
    sd_bus_message *m = NULL, *reply = NULL;
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message_new_method_call(bus, &m, ANCHOR, ANCHOR_PATH, ANCHOR, "Capture");
    sd_bus_message_open_container(m, 'a', "s");
    for (size_t i = 0; i < NSPECS; ++i)
      sd_bus_message_append(m, "s", specs[i]);
    sd_bus_message_close_container(m);
    if (sd_bus_call(bus, m, 0, &e, &reply) < 0)
      die("the anchor's Capture", -EIO, &e);
    sd_bus_message_unref(m);
    sd_bus_message_unref(reply);
  }

  double *tr = calloc((size_t)rounds, sizeof *tr), *tp = calloc((size_t)rounds, sizeof *tp),
         *tf = calloc((size_t)rounds, sizeof *tf);
  printf("%-36s %10s %10s %8s %10s %8s\n", "read (interleaved, medians)", "call us", "Ping us", "x Ping", "floor us",
         "x floor");
  for (size_t s = 0; s < NSPECS; ++s) {
    char floor_method[8]; /* the anchor's method of this reply's shape (see anchor.cpp) */
    const char *sp = specs[s];
    const char kind = strstr(sp, "ListAvailable")                                  ? 'L'
                      : strstr(sp, "GetManagedObjects")                            ? 'G'
                      : (strstr(sp, "ListDevices") || strstr(sp, "ListInstances")) ? 'O'
                      : strstr(sp, "Properties.Get:")                              ? 'V'
                                                                                   : 'M';
    snprintf(floor_method, sizeof floor_method, "%c%zu", kind, s);
    for (int i = 0; i < rounds; ++i) {
      double t = now_us();
      read_call(bus, specs[s]);
      tr[i] = now_us() - t;
      t = now_us();
      ping(bus, HOSTDEV);
      tp[i] = now_us() - t;
      t = now_us();
      simple_call(bus, ANCHOR, ANCHOR_PATH, ANCHOR, floor_method);
      tf[i] = now_us() - t;
    }
    const double r = median(tr, (size_t)rounds), p = median(tp, (size_t)rounds), f = median(tf, (size_t)rounds);
    printf("%-36s %10.1f %10.1f %8.2f %10.1f %8.2f\n", specs[s], r, p, r / p, f, r / f);
  }

  /* Another connection's Ping while a big read loops on this one. */
  {
    double idle[200], busy[200];
    sd_bus *other = open_bus();
    for (int i = 0; i < 200; ++i) {
      double t = now_us();
      ping(other, HOSTDEV);
      idle[i] = now_us() - t;
    }
    const pid_t looper = fork();
    if (looper == 0) {
      sd_bus *own = open_bus();
      for (;;)
        read_call(own, "Devices.ListAvailable+all");
    }
    usleep(200000);
    for (int i = 0; i < 200; ++i) {
      double t = now_us();
      ping(other, HOSTDEV);
      busy[i] = now_us() - t;
      usleep(2000);
    }
    kill(looper, SIGKILL);
    waitpid(looper, NULL, 0);
    const double mi = median(idle, 200), mb = median(busy, 200);
    printf("another client's Ping: idle %.1f us, while ListAvailable({all}) loops %.1f us (%.2fx)\n", mi, mb, mb / mi);
    sd_bus_unref(other);
  }

  /* A quarter of the read rounds (each polkit round makes four calls), at least 20. */
  print_polkit_figures(bus, rounds / 4 > 20 ? rounds / 4 : 20);

  printf("activation to first reply: hostdevd %.1f ms, trivial sdbus-c++ anchor %.1f ms\n", act_hostdev, act_anchor);
  print_rss_after_reads(bus, pid, rss_start);
  free(tr);
  free(tp);
  free(tf);
  sd_bus_unref(bus);
  return 0;
}
