/* SPDX-License-Identifier: MIT */
/*
 * The helpers of the migration tests (test_migrate.c and
 * test_migrate_bad.c): vmrun sources and destinations started, migrated
 * and stopped through their control sockets, their guests watched.
 */
#include "tests/kvm/migrate_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/util/compiler.h"
#include "tests/harness/test_util.h"
#include "tests/kvm/run_util.h"

/* The pass mig_wait_guest() waits for (ping_pong's guest is smaller). */
unsigned long long mig_work_pages = WORK_PAGES;

char mig_out[CAP], mig_err[CAP], mig_top[64];
/* Passed as fd 3 to the next destination started (-1: none), and where
 * it listens. */
int mig_dest_keep_fd = -1;
const char *mig_dest_listen = "tcp:127.0.0.1:0";

/* Every vmrun a test started, so that the next test starts clean
 * whatever became of the last (a failed assertion leaves the test at
 * once, its processes still running). */
static pid_t spawned[256];
static unsigned int nr_spawned;

pid_t mig_spawn(const char *const *argv, const char *err_path, int keep_fd)
{
	pid_t pid = spawn_vmrun(argv, err_path, keep_fd);

	if (nr_spawned < ARRAY_SIZE(spawned))
		spawned[nr_spawned++] = pid;
	return pid;
}

void mig_setup(void)
{
	char cmd[128];
	unsigned int i;

	for (i = 0; i < nr_spawned; i++)
		if (spawned[i] > 0 && waitpid(spawned[i], NULL, WNOHANG) == 0) {
			kill(spawned[i], SIGKILL);
			reap_vmrun(spawned[i], DEADLINE_MS);
		}
	nr_spawned = 0;
	snprintf(mig_top, sizeof(mig_top), "/tmp/vmrun-mig-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "rm -rf %s", mig_top);
	TEST_CHECK(system(cmd) == 0, "%s", cmd);
	mkdir(mig_top, 0700);
}

void mig_cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", mig_top);
	TEST_CHECK(system(cmd) == 0, "%s", cmd);
}

char *mig_slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, len - 1) : 0;

	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	return buf;
}

void mig_names(struct vmp *v, const char *name)
{
	snprintf(v->con, sizeof(v->con), "%s/%s.con", mig_top, name);
	snprintf(v->sock, sizeof(v->sock), "%s/%s.sock", mig_top, name);
	snprintf(v->errf, sizeof(v->errf), "%s/%s.err", mig_top, name);
}

/* The source: the reference guest running @cmdline, with an rng and,
 * unless @disk is NULL, a disk. */
void mig_start_source(struct vmp *v, const char *disk, const char *cmdline)
{
	char con[160];
	const char *a[] = { "run",	 "--cpus", "2",		"--mem",
			    "128M",	 "--rng",  "--ctl",	v->sock,
			    "--console", con,	   "--cmdline", cmdline,
			    "--disk",	 disk,	   NULL };

	if (!disk)
		a[12] = NULL;
	snprintf(con, sizeof(con), "file:%s", v->con);
	unlink(v->sock);
	v->pid = mig_spawn(a, v->errf, -1);
	TEST_ASSERT(v->pid > 0 && wait_file(v->sock, v->pid, DEADLINE_MS),
		    "the source did not start: %s",
		    mig_slurp(v->errf, mig_err, CAP));
}

/*
 * A destination on a free loopback port (tcp:127.0.0.1:0) with @extra
 * options; returns once it says where it listens, the URI in @uri.
 */
void mig_start_dest(struct vmp *v, const char *const *extra, char *uri,
		    size_t len)
{
	char con[160];
	const char *a[24] = { "run",   "--incoming", mig_dest_listen,
			      "--ctl", v->sock,	     "--console",
			      con };
	unsigned int n = 7, i;
	const char *p = NULL;

	snprintf(con, sizeof(con), "file:%s", v->con);
	while (extra && *extra)
		a[n++] = *extra++;
	a[n] = NULL;
	unlink(v->sock);
	v->pid = mig_spawn(a, v->errf, mig_dest_keep_fd);
	TEST_ASSERT(v->pid > 0, "fork");
	for (i = 0; i < DEADLINE_MS / 10; i++) {
		p = strstr(mig_slurp(v->errf, mig_err, CAP), "on tcp:");
		if (p && strchr(p, '\n'))
			break;
		usleep(10000);
	}
	TEST_ASSERT(p && strchr(p, '\n'), "the destination did not listen: %s",
		    mig_err);
	snprintf(uri, len, "%.*s", (int)(strchr(p, '\n') - p - 3), p + 3);
}

int mig_reap(struct vmp *v)
{
	return reap_vmrun(v->pid, DEADLINE_MS);
}

int mig_ctl_migrate(const struct vmp *v, const char *uri)
{
	const char *a[] = { "ctl", v->sock, "migrate", uri, "--json", NULL };

	return run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
}

/*
 * Waits (a deadline) until @v's console has @ticks more whole ticks than
 * @from holds and a whole verification pass since its first tick; checks
 * the guest never reported anything wrong. @splices: lines a migration
 * may have cut (console_scan()).
 */
struct console_scan mig_wait_guest(const struct vmp *v, unsigned int ticks,
				   bool pass, unsigned int splices)
{
	struct console_scan cs;
	long long end = now_ms() + DEADLINE_MS;

	for (;;) {
		console_scan(v->con, &cs);
		if (cs.bad ||
		    (cs.ticks >= ticks &&
		     (!pass || cs.last_verified - cs.first_verified >=
				       mig_work_pages)) ||
		    now_ms() > end)
			break;
		usleep(20000);
	}
	TEST_ASSERT(cs.bad == 0 && cs.broken <= splices,
		    "%s: the guest reported (%u broken lines: '%s' '%s'):%s",
		    v->con, cs.broken, cs.broken_line[0], cs.broken_line[1],
		    cs.why);
	TEST_ASSERT(cs.ticks >= ticks &&
			    (!pass || cs.last_verified - cs.first_verified >=
					      mig_work_pages),
		    "%s: %u ticks (want %u), %llu pages verified; last line "
		    "'%s'",
		    v->con, cs.ticks, ticks,
		    cs.last_verified - cs.first_verified, cs.last_line);
	return cs;
}

/* @to went on exactly where @from stopped. */
void mig_check_continues(const struct vmp *from, const struct vmp *to)
{
	struct console_scan a, b;

	console_scan(from->con, &a);
	b = mig_wait_guest(to, 3, true, 2);
	/* The first whole tick is the next one, or the one after if the
	 * freeze cut a line (the destination finishes it first). */
	TEST_ASSERT(b.first_n == a.last_n + 1 || b.first_n == a.last_n + 2,
		    "the destination's first tick is n=%llu after n=%llu",
		    b.first_n, a.last_n);
}

/* Stops @v through its control socket; returns its exit status. */
int mig_stop_vm(struct vmp *v)
{
	const char *a[] = { "ctl", v->sock, "stop", NULL };

	run_vmrun(a, mig_out, mig_err, CAP, DEADLINE_MS);
	return mig_reap(v);
}

void mig_make_disk(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, 4 << 20) == 0, "disk %s", path);
	close(fd);
}

/* A migration of @v to @uri in the background, its client's stderr in
 * @errf; @extra options after the URI. */
pid_t mig_spawn_migrate(const struct vmp *v, const char *uri, const char *errf,
			const char *const *extra)
{
	const char *a[16] = { "ctl", v->sock, "migrate", uri };
	unsigned int n = 4;

	while (extra && *extra && n < 15)
		a[n++] = *extra++;
	a[n] = NULL;
	return mig_spawn(a, errf, -1);
}
