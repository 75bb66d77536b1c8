/* SPDX-License-Identifier: MIT */
/*
 * Live migration between two vmrun processes over loopback: the
 * reference guest writing memory as fast as it can (with a disk and an
 * rng) moves and moves back, its counter continuing and no page lost.
 * Migrations that fail and streams that are not migrations are tested in
 * test_migrate_bad.c, with the helpers of migrate_util.c both use.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/migrate_util.h"
#include "tests/kvm/run_util.h"

/*
 * The busy guest migrates, then migrates again from where it arrived;
 * each source exits 0 once the destination runs, every destination goes
 * on from the exact tick and verifies all its memory without a mismatch,
 * disk traffic included (the disk is shared, as on shared storage).
 */
static void test_migrate_loopback(void)
{
	struct vmp v[3];
	char disk[128], uri[128];
	const char *extra[] = { "--disk", disk, NULL };
	unsigned int i;
	int rc;

	mig_setup();
	snprintf(disk, sizeof(disk), "%s/disk.img", mig_top);
	mig_make_disk(disk);
	mig_names(&v[0], "src");
	mig_start_source(&v[0], disk, CMDLINE);
	mig_wait_guest(&v[0], 4, false, 1);
	for (i = 1; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "dst%u", i);
		mig_names(&v[i], name);
		mig_start_dest(&v[i], extra, uri, sizeof(uri));
		if (i == 1) {
			/* The default: codec auto, a thread per CPU. */
			rc = mig_ctl_migrate(&v[i - 1], uri);
			TEST_ASSERT(strstr(mig_out, "\"codec\":\"lz4\"") &&
					    strstr(mig_out, "\"auto\":true"),
				    "%s", mig_out);
		} else {
			/* zstd on 3 threads, the stream on 3 connections. */
			const char *a[] = { "ctl",	     v[i - 1].sock,
					    "migrate",	     uri,
					    "--compress",    "zstd",
					    "--threads",     "3",
					    "--connections", "3",
					    "--json",	     NULL };

			rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
			TEST_ASSERT(
				strstr(mig_out, "\"codec\":\"zstd\"") &&
					strstr(mig_out, "\"auto\":false") &&
					strstr(mig_out, "\"threads\":3,") &&
					strstr(mig_out, "\"connections\":3}"),
				"%s", mig_out);
		}
		TEST_ASSERT(rc == 0 && strstr(mig_out, "\"migrated\""),
			    "migrate %u: exit %d: %s %s", i, rc, mig_out,
			    mig_err);
		TEST_ASSERT(strstr(mig_out, "\"rounds\":") &&
				    !strstr(mig_out, "\"batches\":0,"),
			    "%s", mig_out);
		rc = mig_reap(&v[i - 1]);
		TEST_ASSERT(rc == 0, "the source %u exited %d: %s", i - 1, rc,
			    mig_slurp(v[i - 1].errf, mig_err, CAP));
		mig_check_continues(&v[i - 1], &v[i]);
	}
	rc = mig_stop_vm(&v[2]);
	TEST_ASSERT(rc == 0, "the last destination exited %d: %s", rc,
		    mig_slurp(v[2].errf, mig_err, CAP));
	mig_wait_guest(&v[2], 3, true, 2);
	mig_cleanup();
}

/* The spin the converge test's guest does per page written: enough that
 * its writing is bound by it, not by dirty tracking's write faults. */
#define SPIN "200000"

/*
 * Pages per second a guest bound by its CPU (spin=) writes here, from
 * its ticks: what the converge test sizes its link and memory by.
 */
static unsigned long long pages_per_s(void)
{
	struct vmp v;
	struct console_scan cs;
	unsigned long long w;

	mig_names(&v, "calib");
	mig_start_source(&v, NULL,
			 "work=dirty mib=1 rate=0 tick_ms=100 spin=" SPIN);
	mig_wait_guest(&v, 8, false, 0);
	mig_stop_vm(&v);
	console_scan(v.con, &cs);
	/* Between the first and the last tick: the fill before the first
	 * went unspun. */
	TEST_ASSERT(cs.ticks >= 8 && cs.last_n > cs.first_n, "calibration");
	w = (cs.last_written - cs.first_written) * 10 /
	    (cs.last_n - cs.first_n);
	TEST_ASSERT(w >= 300, "the guest writes only %llu pages/s here", w);
	return w;
}

/*
 * A guest whose memory is written four times as fast as the link takes
 * it (a bandwidth cap of a quarter of what it writes, its memory a
 * sixteenth of a second of its writing) never converges by itself: the
 * vCPUs are throttled (the default, auto-converge) until the rounds
 * shrink, and the guest arrives whole. Before that, a migration that
 * cannot be done in its time limit (1 s for 1 MB/s of a guest with more
 * than 1 MB to send, uncompressed) gives up, and the source runs on.
 */
static void test_migrate_converge(void)
{
	struct vmp src, dst;
	char uri[128], cmdline[128], mbs[16];
	const char *limited[] = { "--bandwidth", "1",	 "--max-time", "1",
				  "--compress",	 "none", "--json",     NULL };
	const char *a[] = { "ctl",	   src.sock, NULL,	   NULL,
			    "--bandwidth", mbs,	     "--compress", "none",
			    "--downtime",  "10",     "--json",	   NULL };
	unsigned long long w, mib, cap;
	struct console_scan cs;
	const char *p;
	int rc;

	mig_setup();
	w = pages_per_s();
	mib = MIN(MAX(w / 16 / 256, 1ull), 64ull);
	/* A quarter, not less: the throttle must bring the guest below the
	 * cap, and in the emulated host a vCPU takes milliseconds to leave
	 * guest mode when paused, which it spends writing (with an eighth,
	 * a 99% throttle there once left the guest writing all of its
	 * memory every round). */
	cap = MAX(w * 4096 / 4 / 1000000, 1ull);
	snprintf(mbs, sizeof(mbs), "%llu", cap);
	snprintf(
		cmdline, sizeof(cmdline),
		"work=dirty mib=%llu rate=0 tick_ms=100 verify_ms=200 spin=" SPIN,
		mib);
	mig_names(&src, "src");
	mig_start_source(&src, NULL, cmdline);
	cs = mig_wait_guest(&src, 3, false, 0);

	mig_names(&dst, "limited");
	mig_start_dest(&dst, NULL, uri, sizeof(uri));
	{
		pid_t pid;
		char errf[128], errbuf[4096];

		snprintf(errf, sizeof(errf), "%s/limited.err", mig_top);
		pid = mig_spawn_migrate(&src, uri, errf, limited);
		rc = reap_vmrun(pid, DEADLINE_MS);
		mig_slurp(errf, errbuf, sizeof(errbuf));
		TEST_ASSERT(rc == 1 && strstr(errbuf, "time limit"),
			    "1 MB/s, 1 s: exit %d: %s", rc, errbuf);
	}
	TEST_ASSERT(mig_reap(&dst) != 0,
		    "the destination of a migration out of "
		    "time exited 0");
	cs = mig_wait_guest(&src, cs.ticks + 3, false, 0);

	mig_names(&dst, "dst");
	mig_start_dest(&dst, NULL, uri, sizeof(uri));
	a[2] = "migrate";
	a[3] = uri;
	rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
	TEST_ASSERT(rc == 0,
		    "%llu pages/s, %llu MiB, %llu MB/s: exit %d: %s %s", w, mib,
		    cap, rc, mig_out, mig_err);
	p = strstr(mig_out, "\"throttle_max\":");
	TEST_ASSERT(p && atoi(p + 15) > 0,
		    "converged without a throttle (%llu pages/s, %llu MiB, "
		    "%llu MB/s): %s",
		    w, mib, cap, mig_out);
	TEST_ASSERT(mig_reap(&src) == 0, "the source did not exit 0");
	mig_check_continues(&src, &dst);
	mig_stop_vm(&dst);
	mig_cleanup();
}

/*
 * The guest's network card on a socket back end at both ends: once the
 * destination has it, it announces the guest's MAC (a RARP broadcast)
 * on its back end, and the guest's traffic goes on there (an echo that
 * comes back garbled is a mismatch in its ticks).
 */
static void test_migrate_announce(void)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	int s[2], d[2];
	struct echo es = { 0 }, ed = { 0 };
	pthread_t ts, td;
	struct vmp src, dst;
	char con[160], uri[128];
	const char *a[] = { "run",    "--cpus",	   "2",	   "--mem",
			    "128M",   "--net",	   "fd:3", "--ctl",
			    src.sock, "--console", con,	   "--cmdline",
			    CMDLINE,  NULL };
	const char *extra[] = { "--net", "fd:3", NULL };
	long long end;
	int rc;

	mig_setup();
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) ==
				    0 &&
			    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
				       0, d) == 0,
		    "socketpair");
	es.fd = s[0];
	ed.fd = d[0];
	TEST_ASSERT(pthread_create(&ts, NULL, echo_thread, &es) == 0 &&
			    pthread_create(&td, NULL, echo_thread, &ed) == 0,
		    "echo threads");
	mig_names(&src, "src");
	snprintf(con, sizeof(con), "file:%s", src.con);
	unlink(src.sock);
	src.pid = mig_spawn(a, src.errf, s[1]);
	TEST_ASSERT(src.pid > 0 && wait_file(src.sock, src.pid, DEADLINE_MS),
		    "the source did not start: %s",
		    mig_slurp(src.errf, mig_err, CAP));
	mig_wait_guest(&src, 3, false, 0);
	TEST_ASSERT(__atomic_load_n(&es.rarps, __ATOMIC_SEQ_CST) == 0,
		    "the source announced itself");

	mig_names(&dst, "dst");
	mig_dest_keep_fd = d[1];
	mig_start_dest(&dst, extra, uri, sizeof(uri));
	mig_dest_keep_fd = -1;
	rc = mig_ctl_migrate(&src, uri);
	TEST_ASSERT(rc == 0, "migrate: exit %d: %s %s", rc, mig_out, mig_err);
	TEST_ASSERT(mig_reap(&src) == 0, "the source did not exit 0");
	end = now_ms() + DEADLINE_MS;
	while (!__atomic_load_n(&ed.rarps, __ATOMIC_SEQ_CST) && now_ms() < end)
		usleep(10000);
	TEST_ASSERT(ed.rarps >= 1 && !memcmp(ed.rarp_mac, mac, 6),
		    "no announcement of 02:00:00:00:00:01 from the "
		    "destination (%u)",
		    ed.rarps);
	mig_check_continues(&src, &dst);
	/* The guest's own traffic goes on through the destination's card. */
	end = now_ms() + DEADLINE_MS;
	while (!__atomic_load_n(&ed.frames, __ATOMIC_SEQ_CST) && now_ms() < end)
		usleep(10000);
	TEST_ASSERT(ed.frames >= 1, "no frame from the guest at the "
				    "destination");
	mig_stop_vm(&dst);
	es.stop = ed.stop = 1;
	pthread_join(ts, NULL);
	pthread_join(td, NULL);
	close(s[0]);
	close(s[1]);
	close(d[0]);
	close(d[1]);
	mig_cleanup();
}

#define PING_PONG 20

/*
 * Two hosts made of network namespaces joined by a veth pair (the test
 * creates and removes them): the dirtying guest, with a shared disk,
 * migrates from one to the other and back, PING_PONG times over TCP on
 * the veth (every fourth hop on two connections); after every hop the source has exited 0 and the destination
 * goes on from the exact tick and verifies a whole pass of its memory
 * and its disk I/O without a mismatch.
 */
static void test_migrate_ping_pong(void)
{
	struct vmp v[2];
	char disk[128], uri[128], listen[64];
	const char *extra[] = { "--disk", disk, NULL };
	int self, rc, i;

	mig_setup();
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	TEST_ASSERT(self >= 0, "/proc/self/ns/net");
	if (!test_two_hosts(true)) {
		test_two_hosts(false);
		close(self);
		mig_cleanup();
		TEST_REQUIRE(false, "network namespaces and veth (ip netns, ip "
				    "link add type veth)");
	}
	snprintf(disk, sizeof(disk), "%s/disk.img", mig_top);
	mig_make_disk(disk);
	mig_names(&v[0], "hop0");
	TEST_ASSERT(test_enter_host(0) == 0, "entering host a");
	/* A quarter of the usual workload: a whole pass after each of the
	 * many hops costs a quarter as much. */
	mig_start_source(&v[0], disk,
			 "work=dirty mib=4 rate=0 tick_ms=100 verify_ms=200");
	mig_work_pages = WORK_PAGES / 4;
	TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
	mig_wait_guest(&v[0], 3, false, 1);
	for (i = 1; i <= PING_PONG; i++) {
		struct vmp *from = &v[(i - 1) % 2], *to = &v[i % 2];
		char name[16];

		snprintf(name, sizeof(name), "hop%d", i);
		mig_names(to, name);
		/* Host b listens on .2, host a on .1. */
		snprintf(listen, sizeof(listen), "tcp:" TWO_HOSTS_NET "%d:0",
			 i % 2 + 1);
		mig_dest_listen = listen;
		TEST_ASSERT(test_enter_host(i % 2) == 0, "entering host %c",
			    'a' + i % 2);
		mig_start_dest(to, extra, uri, sizeof(uri));
		TEST_ASSERT(setns(self, CLONE_NEWNET) == 0, "setns back");
		mig_dest_listen = "tcp:127.0.0.1:0";
		if (i % 4 == 0) {
			/* Every fourth hop on 2 connections across the veth. */
			const char *a[] = { "ctl",	     from->sock,
					    "migrate",	     uri,
					    "--connections", "2",
					    "--json",	     NULL };

			rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
			TEST_ASSERT(rc || strstr(mig_out, "\"connections\":2}"),
				    "%s", mig_out);
		} else {
			rc = mig_ctl_migrate(from, uri);
		}
		TEST_ASSERT(rc == 0 && strstr(mig_out, "\"migrated\""),
			    "hop %d to %s: exit %d: %s %s", i, uri, rc, mig_out,
			    mig_err);
		rc = mig_reap(from);
		TEST_ASSERT(rc == 0, "hop %d: the source exited %d: %s", i, rc,
			    mig_slurp(from->errf, mig_err, CAP));
		mig_check_continues(from, to);
	}
	mig_stop_vm(&v[PING_PONG % 2]);
	mig_work_pages = WORK_PAGES;
	test_two_hosts(false);
	close(self);
	mig_cleanup();
}

const struct test_case migrate_tests[] = {
	{ "loopback", test_migrate_loopback },
	{ "failures_lose_nothing", test_migrate_failures_lose_nothing },
	{ "cancel", test_migrate_cancel },
	{ "stalls", test_migrate_stalls },
	{ "converge", test_migrate_converge },
	{ "announce", test_migrate_announce },
	{ "ping_pong", test_migrate_ping_pong },
	{ "bad_streams", test_migrate_bad_streams },
	{ "bad_arguments", test_migrate_bad_arguments },
	{ NULL, NULL },
};
