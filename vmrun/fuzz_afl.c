/* SPDX-License-Identifier: MIT */
/* vmrun fuzz --afl: AFL++'s fork-server protocol. */
#include <poll.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "snapshot/fuzzer.h"
#include "snapshot/vmsnap.h"
#include "vmrun/fuzz.h"
#include "vmrun/vmrun.h"

/* AFL++'s fork-server protocol (its include/config.h and types.h). */
#define AFL_SHM_ENV "__AFL_SHM_ID"
#define AFL_FS_OPT_ENABLED 0x80000001u
#define AFL_FS_OPT_MAPSIZE 0x40000000u
#define AFL_FS_OPT_SET_MAPSIZE(x) (((x)-1) << 1)

/*
 * --afl. afl-fuzz talks to its "fork server" on fds 198 (control) and 199
 * (status): we say hello (with the coverage map's size) once the
 * checkpoint is taken, then, per execution, read 4 bytes, answer with a
 * child's pid, run the input and answer with a wait status. The pid is a
 * stand-in process that does nothing: afl-fuzz kills it when the
 * execution outlives its own time-out, which makes that execution a hang
 * to afl-fuzz, as a killed child would be.
 */
static pid_t spawn_stand_in(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

/*
 * The engine runs in the vCPU thread, where the time-out timer's signal
 * lands (no SA_RESTART, so that KVM_RUN returns): a pipe read or write
 * waiting on afl-fuzz comes back with EINTR then, and is simply redone.
 */
static int afl_io(int fd, uint32_t *v, bool out)
{
	size_t done = 0;

	while (done < sizeof(*v)) {
		ssize_t n =
			out ? write(fd, (char *)v + done, sizeof(*v) - done) :
			      read(fd, (char *)v + done, sizeof(*v) - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

static int afl_write(uint32_t v)
{
	return afl_io(FUZZ_AFL_ST_FD, &v, true);
}

/* Waits up to @ms for @pid to end (afl-fuzz killing the stand-in). */
static void wait_pid_bounded(pid_t pid, int ms)
{
	struct pollfd p = { .fd = (int)syscall(SYS_pidfd_open, pid, 0),
			    .events = POLLIN };
	struct timespec t0, t;

	if (p.fd < 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int left;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 +
				  (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, left) != -1 || errno != EINTR)
			break;
	}
	close(p.fd);
}

static bool afl_next(void *opaque, uint8_t *buf, size_t max, size_t *len)
{
	struct fz *z = opaque;
	uint32_t was_killed;
	struct stat sb;
	ssize_t n;
	int fd;

	if (afl_io(FUZZ_AFL_CTL_FD, &was_killed, false) < 0)
		return false; /* afl-fuzz has gone */
	if (z->stand_in <= 0)
		z->stand_in = spawn_stand_in();
	if (z->stand_in < 0 || afl_write((uint32_t)z->stand_in) < 0)
		return false;
	fd = z->input_path ? open(z->input_path, O_RDONLY | O_CLOEXEC) : 0;
	n = -1;
	if (fd >= 0 && fstat(fd, &sb) == 0)
		n = pread(fd, buf, MIN((size_t)sb.st_size, max), 0);
	if (fd > 0)
		close(fd);
	*len = n > 0 ? (size_t)n : 0;
	if (z->afl_map)
		memset(z->afl_map, 0, z->afl_map_size);
	return true;
}

static void afl_done(void *opaque, const struct fuzz_exec *e)
{
	struct fz *z = opaque;
	uint32_t status = 0;
	int ws;

	if (z->afl_map && e->cov)
		memcpy(z->afl_map, e->cov, MIN(z->afl_map_size, e->cov_size));
	if (e->outcome == FUZZ_CRASH) {
		status = (e->code & ~0xffu) == FUZZ_CODE_FAULT ? SIGSEGV :
								 SIGABRT;
	} else if (e->outcome == FUZZ_TIMEOUT) {
		/* Wait (bounded) for afl-fuzz to kill the stand-in. */
		wait_pid_bounded(z->stand_in, 10000);
		if (waitpid(z->stand_in, &ws, WNOHANG) == z->stand_in) {
			status = (uint32_t)ws;
			z->stand_in = 0;
		}
	}
	if (afl_write(status) < 0)
		pr_warn("fuzz: afl-fuzz's status pipe closed");
}

static void afl_ready(void *opaque)
{
	struct fz *z = opaque;
	struct fuzzer_stats st;
	const char *id = getenv(AFL_SHM_ENV);
	uint32_t hello = AFL_FS_OPT_ENABLED;

	fuzzer_stats(z->f, &st);
	if (id) {
		void *p = shmat(atoi(id), NULL, 0);

		if (p == (void *)-1)
			pr_warn("fuzz: cannot attach afl-fuzz's map %s: %s", id,
				strerror(errno));
		else
			z->afl_map = p;
	}
	z->afl_map_size = st.cov_size ? st.cov_size : 0;
	if (st.cov_size)
		hello |= AFL_FS_OPT_MAPSIZE |
			 AFL_FS_OPT_SET_MAPSIZE(st.cov_size);
	if (afl_write(hello) < 0)
		pr_warn("fuzz: no afl-fuzz on fd %d", FUZZ_AFL_ST_FD);
	z->ready = true;
}

const struct fuzzer_ops fuzz_afl_ops = {
	.next = afl_next,
	.done = afl_done,
	.ready = afl_ready,
};

bool fuzz_afl_pipes(void)
{
	return fcntl(FUZZ_AFL_CTL_FD, F_GETFD) >= 0 &&
	       fcntl(FUZZ_AFL_ST_FD, F_GETFD) >= 0;
}

void fuzz_afl_end(struct fz *z)
{
	if (z->stand_in > 0) {
		kill(z->stand_in, SIGKILL);
		waitpid(z->stand_in, NULL, 0);
		z->stand_in = 0;
	}
}
