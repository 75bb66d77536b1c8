/* SPDX-License-Identifier: MIT */
/*
 * The reference guest under vmrun run: its workload with 1 and 4 vCPUs,
 * virtio-blk both ways through a raw image, virtio-net through the
 * unprivileged socket back end and through a tap in a network namespace
 * the test creates, and a clean stop on SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CAP (1 << 20)

static char out[CAP], err[CAP];

struct ticks {
	unsigned int nr;
	unsigned long long last_n, written, verified, mismatches;
	bool increasing;
};

/* Parses every TICK line; checks n grows by one each time. */
static void parse_ticks(const char *s, struct ticks *t)
{
	const char *p = s;

	memset(t, 0, sizeof(*t));
	t->increasing = true;
	while ((p = strstr(p, "GUEST TICK "))) {
		unsigned long long n, w, v, mm;

		if (sscanf(p,
			   "GUEST TICK n=%llu written=%llu verified=%llu mismatches=%llu",
			   &n, &w, &v, &mm) == 4) {
			if (t->nr && n != t->last_n + 1)
				t->increasing = false;
			t->nr++;
			t->last_n = n;
			t->written = w;
			t->verified = v;
			t->mismatches += mm;
		}
		p++;
	}
}

/* The value of "key=" in the last line starting with @prefix. */
/*
 * Progress conditions for run_vmrun_until(): the guest has done what the
 * test needs, however long that took on this host.
 */
struct progress {
	unsigned int ticks;	     /* TICK lines at least */
	unsigned long long written;  /* pages written at least */
	const char *io_key;	     /* and, if set, this GUEST IO counter */
	unsigned long long io_least; /* at least this */
};

static bool reached(const char *s, void *arg)
{
	const struct progress *p = arg;
	struct ticks t;

	parse_ticks(s, &t);
	if (t.nr < p->ticks || t.written < p->written)
		return false;
	if (p->ticks && !t.verified)
		return false;
	if (p->io_key) {
		unsigned long long v = last_kv(s, "GUEST IO", p->io_key);

		return v != ~0ULL && v >= p->io_least;
	}
	return true;
}

/* The guest runs until @p is reached, then SIGTERM stops it cleanly. */
static int run_until(const char *const *argv, struct progress *p)
{
	return run_vmrun_until(argv, out, err, CAP, 300000, SIGTERM, reached,
			       p);
}

static void workload(const char *cpus, const char *pattern)
{
	/* Every page of the 32 MiB once, a verification pass, 12 reports. */
	struct progress p = { .ticks = 12, .written = 8192 };
	char cmdline[128];
	struct ticks t;
	char want[64];
	int rc;

	snprintf(cmdline, sizeof(cmdline),
		 "work=dirty mib=32 rate=0 pattern=%s tick_ms=100", pattern);
	{
		const char *const a[] = { "run",  "--cpus",    cpus,	"--mem",
					  "256M", "--cmdline", cmdline, NULL };

		rc = run_until(a, &p);
	}
	TEST_ASSERT(rc == 128 + SIGTERM,
		    "%s vCPUs: exit %d, stderr: %s\nconsole: %s", cpus, rc, err,
		    out);
	snprintf(want, sizeof(want), "GUEST READY cpus=%s ", cpus);
	TEST_ASSERT(strstr(out, want), "no '%s' line: %s", want, out);
	parse_ticks(out, &t);
	TEST_ASSERT(t.nr >= 12 && t.increasing,
		    "%u TICK lines, increasing %d: %s", t.nr, t.increasing,
		    out);
	TEST_ASSERT(t.mismatches == 0 && !strstr(out, "GUEST FAIL"),
		    "mismatches %llu: %s", t.mismatches, out);
	TEST_ASSERT(t.written >= 8192 && t.verified > 0,
		    "%llu pages written, %llu verified", t.written, t.verified);
}

static void test_guest_workload_1vcpu(void)
{
	workload("1", "seq");
}

static void test_guest_workload_4vcpus(void)
{
	workload("4", "random");
}

/* The rotate-and-xor checksum the guest uses (docs/guest.md). */
static uint64_t sector_sum(const uint8_t *s)
{
	uint64_t sum = 0, q;
	unsigned int i;

	for (i = 0; i < 64; i++) {
		memcpy(&q, s + i * 8, 8);
		sum = (sum << 1 | sum >> 63) ^ q;
	}
	return sum;
}

static void test_guest_blk_both_ways(void)
{
	char path[] = "/tmp/vmrun-disk-XXXXXX";
	uint8_t sec[512], *img;
	unsigned int i, found = 0;
	unsigned long long host;
	int fd = mkstemp(path), rc;
	const size_t size = 4 << 20;

	TEST_ASSERT(fd >= 0, "mkstemp");
	TEST_ASSERT(ftruncate(fd, (off_t)size) == 0, "ftruncate");
	memcpy(sec, "VMRUNHST", 8);
	for (i = 8; i < 512; i++)
		sec[i] = (uint8_t)(i * 7 + 3);
	TEST_ASSERT(pwrite(fd, sec, 512, 2048 * 512) == 512, "pwrite");
	{
		/* Until two rounds of 8 sectors were written and read back. */
		struct progress p = { .io_key = "blk_r", .io_least = 16 };
		const char *const a[] = { "run",
					  "--disk",
					  path,
					  "--cmdline",
					  "work=idle mib=8 tick_ms=100",
					  NULL };

		rc = run_until(a, &p);
	}
	TEST_ASSERT(rc == 128 + SIGTERM, "exit %d: %s\n%s", rc, err, out);
	/* Host to guest: the guest read the sector the test wrote. */
	host = last_kv(out, "GUEST DEV blk ok", "host");
	TEST_ASSERT(host == sector_sum(sec),
		    "guest saw host sector checksum %#llx, want %#llx: %s",
		    host, (unsigned long long)sector_sum(sec), out);
	TEST_ASSERT(last_kv(out, "GUEST IO", "blk_w") > 0 &&
			    last_kv(out, "GUEST IO", "blk_bad") == 0,
		    "IO counters: %s", out);
	/* Guest to host: its sectors are in the image, self-consistent. */
	img = malloc(size);
	TEST_ASSERT(img && pread(fd, img, size, 0) == (ssize_t)size, "pread");
	for (i = 0; i < 2048; i++) {
		const uint8_t *s = img + i * 512ULL;
		uint64_t k, sum = 0, q;
		unsigned int j;

		if (memcmp(s, "VMRUNBLK", 8))
			continue;
		memcpy(&k, s + 8, 8);
		TEST_ASSERT(k == i, "sector %u claims to be sector %llu", i,
			    (unsigned long long)k);
		for (j = 4; j < 64; j++) {
			memcpy(&q, s + j * 8, 8);
			sum = (sum << 1 | sum >> 63) ^ q;
		}
		memcpy(&q, s + 24, 8);
		TEST_ASSERT(q == sum, "sector %u checksum %#llx, want %#llx", i,
			    (unsigned long long)q, (unsigned long long)sum);
		found++;
	}
	TEST_ASSERT(found >= 8, "only %u guest sectors in the image", found);
	TEST_ASSERT(!memcmp(img + 2048 * 512, sec, 512),
		    "the host sector was overwritten");
	free(img);
	close(fd);
	unlink(path);
}

static void check_echoes(const char *what, unsigned int frames)
{
	unsigned long long tx = last_kv(out, "GUEST IO", "net_tx");
	unsigned long long echo = last_kv(out, "GUEST IO", "net_echo");
	unsigned long long bad = last_kv(out, "GUEST IO", "net_bad");

	TEST_ASSERT(strstr(out, "GUEST DEV net ok"), "%s: no net device: %s",
		    what, out);
	TEST_ASSERT(tx != ~0ULL && tx > 0 && echo > 0 && bad == 0,
		    "%s: tx %llu echo %llu bad %llu (echoed %u): %s", what, tx,
		    echo, bad, frames, out);
	TEST_ASSERT(!strstr(out, "GUEST FAIL"), "%s: %s", what, out);
}

static void test_guest_net_socket_backend(void)
{
	struct echo e = { 0 };
	pthread_t t;
	char spec[32];
	int sv[2], rc;

	TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0,
		    "socketpair: %s", strerror(errno));
	/* sv[1] goes to vmrun (inherited); sv[0] is the echo side. */
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	e.fd = sv[0];
	pthread_create(&t, NULL, echo_thread, &e);
	snprintf(spec, sizeof(spec), "fd:%d", sv[1]);
	{
		struct progress p = { .io_key = "net_echo", .io_least = 1 };
		const char *const a[] = { "run",
					  "--net",
					  spec,
					  "--cmdline",
					  "work=idle mib=8 tick_ms=100",
					  NULL };

		rc = run_until(a, &p);
	}
	e.stop = 1;
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	TEST_ASSERT(rc == 128 + SIGTERM, "exit %d: %s\n%s", rc, err, out);
	check_echoes("socket back end", e.frames);
}

static int sh(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/*
 * A tap on a bridge, both created by vmrun inside a network namespace the
 * test creates; a packet socket on the tap echoes the guest's frames.
 * Afterwards the tap and the bridge vmrun created are gone.
 */
static void test_guest_net_tap_in_netns(void)
{
	char ns[32], cmd[128], nspath[64];
	int self, nsfd, rc, tries;

	snprintf(ns, sizeof(ns), "vmrun-test-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "ip netns add %s", ns);
	TEST_REQUIRE(sh(cmd) == 0, "network namespaces (ip netns add)");
	snprintf(nspath, sizeof(nspath), "/var/run/netns/%s", ns);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	TEST_ASSERT(self >= 0 && nsfd >= 0, "opening namespaces");
	/* This thread enters the namespace; the vmrun child inherits it. */
	TEST_ASSERT(setns(nsfd, CLONE_NEWNET) == 0, "setns: %s",
		    strerror(errno));
	{
		struct progress p = { .io_key = "net_echo", .io_least = 1 };
		const char *const a[] = { "run",
					  "--net",
					  "tap:vmrt0,bridge=vmrbr0",
					  "--cmdline",
					  "work=idle mib=8 tick_ms=100",
					  NULL };
		pid_t pid = fork();

		if (pid == 0) {
			/* Echo side: a packet socket on the tap. */
			struct sockaddr_ll sll = { 0 };
			int fd;

			/* Until vmrun made the tap (a deadline, not a window). */
			for (tries = 0;
			     tries < 30000 && !if_nametoindex("vmrt0"); tries++)
				usleep(10000);
			/* ETH_P_ALL: a bridge port's frames reach only the
			 * catch-all taps, before the bridge takes them. */
			fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
			sll.sll_family = AF_PACKET;
			sll.sll_protocol = htons(ETH_P_ALL);
			sll.sll_ifindex = (int)if_nametoindex("vmrt0");
			if (fd < 0 ||
			    bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
				_exit(1);
			for (;;) { /* until the test kills it */
				uint8_t buf[2048];
				struct sockaddr_ll from;
				socklen_t fl = sizeof(from);
				struct timeval tv = { 0, 10000 };
				ssize_t n;

				setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
					   sizeof(tv));
				n = recvfrom(fd, buf, sizeof(buf), 0,
					     (struct sockaddr *)&from, &fl);
				if (n < 14 ||
				    from.sll_pkttype == PACKET_OUTGOING ||
				    buf[12] != 0x88 || buf[13] != 0xb5)
					continue;
				sendto(fd, buf, (size_t)n, 0,
				       (struct sockaddr *)&sll, sizeof(sll));
			}
			_exit(0);
		}
		rc = run_until(a, &p);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	/* Both interfaces vmrun created must be gone. */
	usleep(100000);
	tries = if_nametoindex("vmrt0") || if_nametoindex("vmrbr0");
	TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
	close(self);
	close(nsfd);
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns);
	sh(cmd);
	TEST_ASSERT(rc == 128 + SIGTERM, "exit %d: %s\n%s", rc, err, out);
	TEST_ASSERT(!tries, "tap or bridge left behind after exit");
	check_echoes("tap", 0);
}

static void test_guest_sigterm_stops_cleanly(void)
{
	const char *const a[] = { "run",
				  "--cpus",
				  "2",
				  "--cmdline",
				  "work=dirty mib=16 rate=50 tick_ms=100",
				  NULL };
	struct progress p = { .ticks = 3 };
	struct ticks t;
	int rc = run_until(a, &p);

	TEST_ASSERT(rc == 128 + SIGTERM, "exit %d (want %d): %s", rc,
		    128 + SIGTERM, err);
	TEST_ASSERT(strstr(err, "signal 15"), "stderr: %s", err);
	parse_ticks(out, &t);
	TEST_ASSERT(t.nr >= 3 && t.mismatches == 0, "ticks %u mismatches %llu",
		    t.nr, t.mismatches);
}

/* With tracking on and harvests every 20 ms, no page goes wrong. */
static void test_guest_workload_under_tracking(void)
{
	static const char *const modes[] = { NULL, "--dirty-ring" };
	unsigned int i;
	struct ticks t;
	int rc;

	for (i = 0; i < 2; i++) {
		const char *const a[] = {
			"run",
			"--cpus",
			"2",
			"--track-dirty",
			"20",
			"--cmdline",
			"work=dirty mib=32 rate=0 pattern=hot ticks=8 tick_ms=100",
			modes[i],
			NULL
		};

		rc = run_vmrun(a, out, err, CAP, 180000);
		TEST_ASSERT(rc == 0, "%s: exit %d: %s",
			    modes[i] ? modes[i] : "log", rc, err);
		parse_ticks(out, &t);
		TEST_ASSERT(t.nr == 8 && t.mismatches == 0 &&
				    !strstr(out, "GUEST FAIL"),
			    "%s: %u ticks, %llu mismatches: %s",
			    modes[i] ? modes[i] : "log", t.nr, t.mismatches,
			    out);
	}
}

const struct test_case guest_tests[] = {
	{ "workload_under_tracking", test_guest_workload_under_tracking },
	{ "workload_1vcpu", test_guest_workload_1vcpu },
	{ "workload_4vcpus", test_guest_workload_4vcpus },
	{ "blk_both_ways", test_guest_blk_both_ways },
	{ "net_socket_backend", test_guest_net_socket_backend },
	{ "net_tap_in_netns", test_guest_net_tap_in_netns },
	{ "sigterm_stops_cleanly", test_guest_sigterm_stops_cleanly },
	{ NULL, NULL },
};
