/* SPDX-License-Identifier: MIT */
/*
 * Live migrations that go wrong (the rest of the migrate suite, whose
 * table is in test_migrate.c): a destination that refuses, dies, stalls
 * or is no vmrun, or a migration cancelled, leaves the source running,
 * untouched, and able to migrate again; streams that are not migrations,
 * or broken ones, are refused by the destination, which then runs
 * nothing; wrong arguments are refused with a reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kernel/util/compiler.h"
#include "migrate/migrate_priv.h"
#include "tests/harness/test_util.h"
#include "tests/kvm/migrate_util.h"
#include "tests/kvm/run_util.h"

/*
 * The migration after failures (@after names them): to a new destination
 * (with @extra), which must go on from the exact tick; then stopped.
 */
static void migrate_good(struct vmp *src, struct vmp *dst,
			 const char *const *extra, const char *after)
{
	char uri[128];
	int rc;

	mig_names(dst, "good");
	mig_start_dest(dst, extra, uri, sizeof(uri));
	rc = mig_ctl_migrate(src, uri);
	TEST_ASSERT(rc == 0, "migrating after %s: exit %d: %s %s", after, rc,
		    mig_out, mig_err);
	TEST_ASSERT(mig_reap(src) == 0, "the source did not exit 0");
	mig_check_continues(src, dst);
	mig_stop_vm(dst);
}

/*
 * A destination that refuses the machine (another memory size), and one
 * that dies after it has read it all but before it accepts it: the source
 * says why, runs on without a mismatch, and then migrates for real.
 */
void test_migrate_failures_lose_nothing(void)
{
	struct vmp src, dst;
	char disk[128], uri[128], errbuf[4096];
	const char *small[] = { "--mem", "64M", NULL };
	const char *dies[] = { "--disk", disk, NULL };
	struct console_scan cs;
	int rc;

	mig_setup();
	snprintf(disk, sizeof(disk), "%s/disk.img", mig_top);
	mig_make_disk(disk);
	mig_names(&src, "src");
	mig_start_source(&src, disk, CMDLINE);
	cs = mig_wait_guest(&src, 3, false, 0);

	mig_names(&dst, "small");
	mig_start_dest(&dst, small, uri, sizeof(uri));
	rc = mig_ctl_migrate(&src, uri);
	/* Refused at the check before the pages ("URI refused the machine"),
	 * not by the stream once pages were on their way. */
	TEST_ASSERT(rc == 1 &&
			    strstr(mig_err, "refused the machine: the machine "
					    "has 128 MiB of memory, this side "
					    "was given 64 MiB") &&
			    strstr(mig_err, uri),
		    "migrating to a 64 MiB destination: exit %d: %s %s", rc,
		    mig_out, mig_err);
	rc = mig_reap(&dst);
	TEST_ASSERT(rc == 2, "the refusing destination exited %d: %s", rc,
		    mig_slurp(dst.errf, errbuf, sizeof(errbuf)));
	cs = mig_wait_guest(&src, cs.ticks + 3, false, 0);

	/* Gone in the middle of the stream. */
	mig_names(&dst, "midway");
	setenv("VMRUN_TEST_MIGRATE_FAULT", "mid-stream", 1);
	mig_start_dest(&dst, dies, uri, sizeof(uri));
	unsetenv("VMRUN_TEST_MIGRATE_FAULT");
	rc = mig_ctl_migrate(&src, uri);
	TEST_ASSERT(rc == 1,
		    "migrating to a destination gone midway: exit "
		    "%d: %s %s",
		    rc, mig_out, mig_err);
	TEST_ASSERT(mig_reap(&dst) != 0,
		    "the destination gone midway exited 0");
	cs = mig_wait_guest(&src, cs.ticks + 3, false, 0);

	/* The same with the stream on several connections. */
	mig_names(&dst, "midway3");
	setenv("VMRUN_TEST_MIGRATE_FAULT", "mid-stream", 1);
	mig_start_dest(&dst, dies, uri, sizeof(uri));
	unsetenv("VMRUN_TEST_MIGRATE_FAULT");
	{
		const char *a[] = { "ctl",	     src.sock, "migrate", uri,
				    "--connections", "3",      NULL };

		rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
	}
	TEST_ASSERT(rc == 1,
		    "migrating on 3 connections to a destination gone "
		    "midway: exit %d: %s %s",
		    rc, mig_out, mig_err);
	TEST_ASSERT(mig_reap(&dst) != 0,
		    "the destination gone midway (3 connections) exited 0");
	cs = mig_wait_guest(&src, cs.ticks + 3, false, 0);

	/* Killed with the whole machine read, before it said so. */
	mig_names(&dst, "dies");
	setenv("VMRUN_TEST_MIGRATE_FAULT", "before-accept", 1);
	mig_start_dest(&dst, dies, uri, sizeof(uri));
	unsetenv("VMRUN_TEST_MIGRATE_FAULT");
	rc = mig_ctl_migrate(&src, uri);
	TEST_ASSERT(rc == 1 && strstr(mig_err, "did not accept"),
		    "migrating to a destination that dies: exit %d: %s %s", rc,
		    mig_out, mig_err);
	rc = mig_reap(&dst);
	TEST_ASSERT(rc != 0, "the dying destination exited 0");
	TEST_ASSERT(access(dst.con, F_OK) || !console_scan(dst.con, &cs) ||
			    cs.ticks == 0,
		    "the dying destination ran the guest");
	/* A whole pass after the failures: nothing was lost. */
	cs = mig_wait_guest(&src, cs.ticks + 3, true, 0);

	migrate_good(&src, &dst, dies, "the failures");
	mig_cleanup();
}

/* `ctl status` of @v, until it shows a migration in @phase (a deadline). */
static void wait_phase(const struct vmp *v, const char *phase)
{
	const char *a[] = { "ctl", v->sock, "status", NULL };
	long long end = now_ms() + DEADLINE_MS;
	char want[64];
	int rc;

	snprintf(want, sizeof(want), "phase %s,", phase);
	for (;;) {
		rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
		if (rc == 0 && strstr(mig_out, want))
			return;
		TEST_ASSERT(now_ms() < end,
			    "no migration in phase %s: exit %d: %s %s", phase,
			    rc, mig_out, mig_err);
		usleep(20000);
	}
}

/*
 * migrate-cancel in each phase (the destination held before it says it
 * can build the machine, or before it says it loaded it, or the rounds
 * slowed by a bandwidth cap): the migration fails saying so, the
 * destination never runs the guest, the source runs on without a
 * mismatch, and a last migration succeeds. `status` shows each phase.
 */
void test_migrate_cancel(void)
{
	static const struct {
		const char *hold, *phase;
	} cases[] = {
		{ "ready", "handshake" },
		{ NULL, "rounds" },
		{ "accept", "accept" },
	};
	const char *slow[] = { "--bandwidth", "1", "--compress", "none", NULL };
	char uri[128], hold[128], errf[128], errbuf[4096];
	struct vmp src, dst;
	struct console_scan cs, d;
	unsigned int i;
	pid_t pid;
	int rc;

	mig_setup();
	snprintf(hold, sizeof(hold), "%s/hold", mig_top);
	snprintf(errf, sizeof(errf), "%s/migrate.err", mig_top);
	mig_names(&src, "src");
	mig_start_source(&src, NULL, CMDLINE);
	cs = mig_wait_guest(&src, 3, false, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *a[] = { "ctl", src.sock, "migrate-cancel", NULL };

		mig_names(&dst, cases[i].phase);
		if (cases[i].hold) {
			close(open(hold, O_CREAT | O_WRONLY, 0600));
			setenv("VMRUN_TEST_MIGRATE_HOLD", cases[i].hold, 1);
			setenv("VMRUN_TEST_MIGRATE_HOLD_FILE", hold, 1);
		}
		mig_start_dest(&dst, NULL, uri, sizeof(uri));
		unsetenv("VMRUN_TEST_MIGRATE_HOLD");
		pid = mig_spawn_migrate(&src, uri, errf,
					cases[i].hold ? NULL : slow);
		wait_phase(&src, cases[i].phase);
		TEST_ASSERT(strstr(mig_out, "expected downtime"),
			    "status shows no migration figures: %s", mig_out);
		rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 0, "migrate-cancel in %s: exit %d: %s",
			    cases[i].phase, rc, mig_err);
		unlink(hold);
		rc = reap_vmrun(pid, DEADLINE_MS);
		mig_slurp(errf, errbuf, sizeof(errbuf));
		TEST_ASSERT(rc == 1 && strstr(errbuf, "cancelled"),
			    "the migration cancelled in %s: exit %d: %s",
			    cases[i].phase, rc, errbuf);
		rc = mig_reap(&dst);
		TEST_ASSERT(rc != 0,
			    "the destination of a migration cancelled "
			    "in %s exited 0",
			    cases[i].phase);
		TEST_ASSERT(access(dst.con, F_OK) ||
				    !console_scan(dst.con, &d) || d.ticks == 0,
			    "the destination ran the guest (cancelled in %s)",
			    cases[i].phase);
		/* The accept phase froze it: a line may be cut there. */
		cs = mig_wait_guest(&src, cs.ticks + 3,
				    i + 1 == ARRAY_SIZE(cases), 1);
	}
	{
		const char *a[] = { "ctl", src.sock, "migrate-cancel", NULL };

		rc = run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 1 && strstr(mig_err, "no migration"),
			    "migrate-cancel with none under way: exit %d: %s",
			    rc, mig_err);
	}
	migrate_good(&src, &dst, NULL, "the cancels");
	mig_cleanup();
}

/*
 * The destination killed while it checks the machine, then stalled (the
 * link open, nothing moving) in each phase: while it checks the machine,
 * during the rounds (the process stopped) and before it accepts. With a
 * link time-out of 2 s the migration fails each time saying why, the
 * source runs on without a mismatch, and a last migration succeeds.
 */
void test_migrate_stalls(void)
{
	enum { KILL, STOP, HOLD };
	static const struct {
		const char *hold, *phase;
		int how;
		const char *want;
	} cases[] = {
		{ "ready", "handshake", KILL, "did not check the machine" },
		{ "ready", "handshake", HOLD, "timed out" },
		{ NULL, "rounds", STOP, "timed out" },
		{ "accept", "accept", HOLD, "timed out" },
	};
	const char *slow[] = { "--bandwidth",	 "1", "--compress", "none",
			       "--link-timeout", "2", NULL };
	const char *quick[] = { "--link-timeout", "2", NULL };
	char uri[128], hold[128], errf[128], errbuf[4096];
	struct vmp src, dst;
	struct console_scan cs;
	unsigned int i;
	pid_t pid;
	int rc;

	mig_setup();
	snprintf(hold, sizeof(hold), "%s/hold", mig_top);
	snprintf(errf, sizeof(errf), "%s/migrate.err", mig_top);
	mig_names(&src, "src");
	mig_start_source(&src, NULL, CMDLINE);
	cs = mig_wait_guest(&src, 3, false, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		char name[16];

		snprintf(name, sizeof(name), "stall%u", i);
		mig_names(&dst, name);
		if (cases[i].hold) {
			close(open(hold, O_CREAT | O_WRONLY, 0600));
			setenv("VMRUN_TEST_MIGRATE_HOLD", cases[i].hold, 1);
			setenv("VMRUN_TEST_MIGRATE_HOLD_FILE", hold, 1);
		}
		mig_start_dest(&dst, NULL, uri, sizeof(uri));
		unsetenv("VMRUN_TEST_MIGRATE_HOLD");
		pid = mig_spawn_migrate(&src, uri, errf,
					cases[i].hold ? quick : slow);
		wait_phase(&src, cases[i].phase);
		if (cases[i].how == KILL)
			kill(dst.pid, SIGKILL);
		else if (cases[i].how == STOP)
			kill(dst.pid, SIGSTOP);
		rc = reap_vmrun(pid, DEADLINE_MS);
		mig_slurp(errf, errbuf, sizeof(errbuf));
		TEST_ASSERT(rc == 1 && strstr(errbuf, cases[i].want),
			    "case %u (%s): exit %d: %s", i, cases[i].phase, rc,
			    errbuf);
		unlink(hold);
		if (cases[i].how == STOP) {
			kill(dst.pid, SIGCONT);
			kill(dst.pid, SIGKILL);
		}
		rc = mig_reap(&dst);
		TEST_ASSERT(rc != 0, "case %u: the destination exited 0", i);
		cs = mig_wait_guest(&src, cs.ticks + 3,
				    i + 1 == ARRAY_SIZE(cases), 1);
	}
	migrate_good(&src, &dst, NULL, "the stalls");
	mig_cleanup();
}

/* The handshake's HELLO and a data connection's DATA: magic, two
 * 32-bit fields (version and connections; index and count), token. */
#define HELLO_LEN 24

static void put_intro(uint8_t *b, const char *magic, uint32_t x, uint32_t y,
		      uint64_t token)
{
	memcpy(b, magic, 8);
	put32(b + 8, x);
	put32(b + 12, y);
	put64(b + 16, token);
}

/*
 * On the control connection @fd, as a source would: the answer to the
 * handshake, then the destination's progress frames (VMRP, 12 bytes
 * each) up to its "ready" (a reply with status 0 before the pages move
 * on), then the go-ahead once the stream is whole. Returns false if the
 * destination said no or went away.
 */
static bool go_ahead(int fd)
{
	uint8_t reply[12 + 1024];
	bool ok = recv(fd, reply, 12, MSG_WAITALL) == 12, more;
	size_t len;

	do {
		ok = ok && recv(fd, reply, 12, MSG_WAITALL) == 12;
		more = ok && !memcmp(reply, "VMRP", 4);
		/* A reply's message: its length is little-endian. */
		len = reply[8] | (size_t)reply[9] << 8 |
		      (size_t)reply[10] << 16 | (size_t)reply[11] << 24;
		ok = ok && (more || len <= sizeof(reply) - 12);
		if (ok && !more && len)
			ok = recv(fd, reply + 12, len, MSG_WAITALL) ==
			     (ssize_t)len;
		if (ok && !more && !reply[4])
			more = !memcmp(reply + 12, "ready", 5);
	} while (more);
	if (!ok || memcmp(reply, "VMRR", 4) || reply[4])
		return false;
	return send(fd, "VMGO", 4, MSG_NOSIGNAL) == 4;
}

/*
 * vmrun run --incoming fd:3 on one end of a socket pair: the test writes
 * @data, and with @go answers the destination's acceptance with the
 * go-ahead as a source would; returns the exit status.
 */
static int feed(const void *data, size_t len, bool go, char *errbuf,
		size_t errlen)
{
	char errf[128];
	const char *a[] = { "run",	 "--incoming", "fd:3",
			    "--console", "none",       NULL };
	int sv[2], st;
	pid_t pid;

	snprintf(errf, sizeof(errf), "%s/feed.err", mig_top);
	TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = mig_spawn(a, errf, sv[1]);
	close(sv[1]);
	/* It may stop reading at any point: a short write is fine. */
	(void)!send(sv[0], data, len, MSG_NOSIGNAL);
	if (go)
		TEST_ASSERT(go_ahead(sv[0]), "no acceptance");
	shutdown(sv[0], SHUT_WR);
	st = reap_vmrun(pid, DEADLINE_MS);
	close(sv[0]);
	mig_slurp(errf, errbuf, errlen);
	return st;
}

/* A connection to the destination listening on the unix socket @path,
 * which has sent @intro (HELLO_LEN bytes). */
static int dial(const char *path, const uint8_t *intro)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = DEADLINE_MS / 1000 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	TEST_ASSERT(
		fd >= 0 &&
			connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				   sizeof(tv)) == 0 &&
			send(fd, intro, HELLO_LEN, MSG_NOSIGNAL) == HELLO_LEN,
		"connecting to %s: %s", path, strerror(errno));
	return fd;
}

/* True once the destination has closed @fd (without waiting for the
 * link's time-out: well within the deadline). */
static bool closed_by_peer(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, 0);

	return r == 0 || (r < 0 && errno == ECONNRESET);
}

/*
 * A destination asked for two data connections (protocol version 3)
 * takes, on its listening socket, only the two the source's HELLO
 * announced. Connections that are not, each introduced in a way a
 * confused or hostile peer might (not DATA at all, another token, an
 * index beyond the count, another count, an index already taken), are
 * closed at once and not counted; the real two then carry the image @buf
 * (@n bytes) in chunks with their headers, and it runs.
 */
static void stray_connections(const uint8_t *buf, size_t n)
{
	const uint64_t token = 0x1122334455667788ull;
	char path[128], errf[128], errbuf[4096];
	const char *a[] = {
		"run", "--incoming", path, "--console", "none", NULL
	};
	uint8_t intro[HELLO_LEN], hdr[STRIPE_HEADER];
	int ctl, data[2], fd, st, i;
	unsigned int strays = 0;
	size_t off, k, chunk;
	pid_t pid;
	const char *p;

	snprintf(errf, sizeof(errf), "%s/stray.err", mig_top);
	snprintf(path, sizeof(path), "unix:%s/stray.sock", mig_top);
	pid = mig_spawn(a, errf, -1);
	TEST_ASSERT(pid > 0 && wait_file(path + 5, pid, DEADLINE_MS),
		    "the destination did not listen: %s",
		    mig_slurp(errf, errbuf, sizeof(errbuf)));
	put_intro(intro, "VMRUNMIG", 3, 2, token);
	ctl = dial(path + 5, intro);

	/* Not DATA at all. */
	memcpy(intro, "GET / HTTP/1.0\r\nHost: x\r\n\r\n", HELLO_LEN);
	fd = dial(path + 5, intro);
	TEST_ASSERT(closed_by_peer(fd), "an HTTP request: not closed");
	close(fd);
	strays++;
	/* Another migration's token; index 2 of 2; index 0 of 3. */
	{
		static const uint32_t ix[3][2] = { { 0, 2 },
						   { 2, 2 },
						   { 0, 3 } };

		for (i = 0; i < 3; i++) {
			put_intro(intro, "VMRUNDAT", ix[i][0], ix[i][1],
				  i ? token : token + 1);
			fd = dial(path + 5, intro);
			TEST_ASSERT(closed_by_peer(fd),
				    "DATA %u of %u (%s token): not closed",
				    ix[i][0], ix[i][1], i ? "the" : "another");
			close(fd);
			strays++;
		}
	}
	/* The real index 0, then another index 0, then the real index 1. */
	put_intro(intro, "VMRUNDAT", 0, 2, token);
	data[0] = dial(path + 5, intro);
	fd = dial(path + 5, intro);
	TEST_ASSERT(closed_by_peer(fd), "a second index 0: not closed");
	close(fd);
	strays++;
	put_intro(intro, "VMRUNDAT", 1, 2, token);
	data[1] = dial(path + 5, intro);

	/* The image in chunks of up to 256 KiB, chunk k on connection
	 * k mod 2 behind its length and number. */
	for (off = 0, k = 0; off < n; off += chunk, k++) {
		chunk = MIN(n - off, (size_t)STRIPE_CHUNK);
		put32(hdr, (uint32_t)chunk);
		put32(hdr + 4, (uint32_t)k);
		TEST_ASSERT(send(data[k % 2], hdr, sizeof(hdr), MSG_NOSIGNAL) ==
					    sizeof(hdr) &&
				    send(data[k % 2], buf + off, chunk,
					 MSG_NOSIGNAL) == (ssize_t)chunk,
			    "sending chunk %zu: %s", k, strerror(errno));
	}
	TEST_ASSERT(go_ahead(ctl), "no acceptance: %s",
		    mig_slurp(errf, errbuf, sizeof(errbuf)));
	st = reap_vmrun(pid, DEADLINE_MS);
	close(ctl);
	close(data[0]);
	close(data[1]);
	mig_slurp(errf, errbuf, sizeof(errbuf));
	TEST_ASSERT(st == 0 && strstr(errbuf, "migrated in"),
		    "the stream beside %u strays: exit %d: %s", strays, st,
		    errbuf);
	for (p = errbuf, i = 0; (p = strstr(p, "not one of the source's")); p++)
		i++;
	TEST_ASSERT(i == (int)strays, "%d of %u strays reported: %s", i, strays,
		    errbuf);
}

/*
 * What is not a migration, or a broken one: refused with exit 2 and a
 * reason, nothing run. The stream is a real image after a real handshake,
 * truncated or with a byte flipped; and the same image whole is taken.
 */
void test_migrate_bad_streams(void)
{
	/* HELLO (version 3): the stream on this connection. */
	static const char hello[HELLO_LEN] = "VMRUNMIG\x03";
	char many[HELLO_LEN];
	char img[128], errbuf[4096];
	uint8_t *buf, *data;
	struct stat sb;
	int fd, rc;
	size_t n;

	mig_setup();
	rc = feed("GET / HTTP/1.0\r\n\r\n", 18, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "not a vmrun migration stream"),
		    "an HTTP request: exit %d: %s", rc, errbuf);
	rc = feed("VMRUNMIG\x63\0\0\0\0\0\0\0", 16, false, errbuf,
		  sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "protocol version 99"),
		    "version 99: exit %d: %s", rc, errbuf);
	rc = feed(hello, HELLO_LEN, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "incoming migration"),
		    "a handshake and nothing: exit %d: %s", rc, errbuf);
	/* More connections than there can be, or several on fd:N. */
	memcpy(many, hello, HELLO_LEN);
	many[12] = 17;
	rc = feed(many, HELLO_LEN, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "asks for 17 connections"),
		    "17 connections: exit %d: %s", rc, errbuf);
	many[12] = 4;
	rc = feed(many, HELLO_LEN, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "this destination has one"),
		    "4 connections on fd:3: exit %d: %s", rc, errbuf);

	/* A real machine image after the handshake: the guest powers off
	 * after 30 ticks, so a destination that runs it ends by itself. */
	snprintf(img, sizeof(img), "%s/vm.vmsnap", mig_top);
	{
		struct vmp v;
		const char *save[] = { "ctl", v.sock, "save", img, NULL };

		mig_names(&v, "img");
		mig_start_source(&v, NULL, CMDLINE " ticks=30");
		mig_wait_guest(&v, 2, false, 0);
		rc = run_vmrun(save, mig_out, mig_err, CAP, DEADLINE_MS);
		TEST_ASSERT(rc == 0, "save: %d %s", rc, mig_err);
		mig_stop_vm(&v);
	}
	fd = open(img, O_RDONLY);
	TEST_ASSERT(fd >= 0 && fstat(fd, &sb) == 0, "%s", img);
	n = (size_t)sb.st_size;
	buf = malloc(HELLO_LEN + n);
	TEST_ASSERT(buf && read(fd, buf + HELLO_LEN, n) == (ssize_t)n,
		    "reading %s", img);
	close(fd);
	memcpy(buf, hello, HELLO_LEN);
	data = buf + HELLO_LEN;

	/* Cut short. */
	rc = feed(buf, HELLO_LEN + n / 2, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "incoming migration"),
		    "a truncated stream: exit %d: %s", rc, errbuf);
	/* A byte flipped in the pages. */
	data[n / 2] ^= 0x40;
	rc = feed(buf, HELLO_LEN + n, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 2 && strstr(errbuf, "incoming migration"),
		    "a corrupt stream: exit %d: %s", rc, errbuf);
	data[n / 2] ^= 0x40;
	/* Whole, but the go-ahead never comes: loaded, never run. */
	rc = feed(buf, HELLO_LEN + n, false, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 1 && strstr(errbuf, "did not confirm"),
		    "no go-ahead: exit %d: %s", rc, errbuf);
	/* Whole, with the go-ahead: it runs to its power-off. */
	rc = feed(buf, HELLO_LEN + n, true, errbuf, sizeof(errbuf));
	TEST_ASSERT(rc == 0 && strstr(errbuf, "migrated in"),
		    "the whole stream: exit %d: %s", rc, errbuf);
	/* The same on two data connections, strays among them. */
	stray_connections(data, n);
	free(buf);
	mig_cleanup();
}

/* Wrong arguments, each refused with exit 2 and a reason. */
void test_migrate_bad_arguments(void)
{
	static const struct {
		const char *argv[8];
		const char *want;
	} cases[] = {
		{ { "run", "--incoming", "tcp:nowhere", NULL },
		  "expected tcp:HOST:PORT" },
		{ { "run", "--incoming", "tcp:127.0.0.1:0", "--kernel", "k",
		    NULL },
		  "come with the machine" },
		{ { "run", "--incoming", "fd:999", NULL },
		  "not an open stream socket" },
		{ { "ctl", "/nonexistent.sock", "migrate", "udp:1.2.3.4:5",
		    NULL },
		  "expected tcp:HOST:PORT" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--downtime", "0", NULL },
		  "--downtime 0" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--compress", "fast", NULL },
		  "expected auto, lz4, zstd or none" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--threads", "65", NULL },
		  "--threads 65: expected 1 to 64" },
		{ { "ctl", "/nonexistent.sock", "save", "/tmp/x.vmsnap",
		    "--threads", "0", NULL },
		  "--threads 0: expected 1 to 64" },
		{ { "ctl", "/nonexistent.sock", "migrate", "tcp:127.0.0.1:9",
		    "--connections", "17", NULL },
		  "--connections 17: expected 1 to 16" },
		{ { "ctl", "/nonexistent.sock", "migrate", "fd:3",
		    "--connections", "2", NULL },
		  "needs tcp:HOST:PORT or unix:PATH" },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int rc = run_vmrun(cases[i].argv, mig_out, mig_err, CAP, 60000);

		TEST_ASSERT(rc == 2 && strstr(mig_err, cases[i].want),
			    "case %u: exit %d, stderr lacks '%s': %s", i, rc,
			    cases[i].want, mig_err);
	}
}
