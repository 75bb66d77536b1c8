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

static int afl_write(struct fz *z, uint32_t v)
{
	return write(FUZZ_AFL_ST_FD, &v, 4) == 4 ? 0 : -EPIPE;
	(void)z;
}

static bool afl_next(void *opaque, uint8_t *buf, size_t max, size_t *len)
{
	struct fz *z = opaque;
	uint32_t was_killed;
	struct stat sb;
	ssize_t n;
	int fd;

	if (read(FUZZ_AFL_CTL_FD, &was_killed, 4) != 4)
		return false; /* afl-fuzz has gone */
	if (z->stand_in <= 0)
		z->stand_in = spawn_stand_in();
	if (z->stand_in < 0 || afl_write(z, (uint32_t)z->stand_in) < 0)
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
		struct pollfd p = { .fd = (int)syscall(SYS_pidfd_open,
						       z->stand_in, 0),
				    .events = POLLIN };

		if (p.fd >= 0) {
			poll(&p, 1, 10000);
			close(p.fd);
		}
		if (waitpid(z->stand_in, &ws, WNOHANG) == z->stand_in) {
			status = (uint32_t)ws;
			z->stand_in = 0;
		}
	}
	if (afl_write(z, status) < 0)
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
	if (afl_write(z, hello) < 0)
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
