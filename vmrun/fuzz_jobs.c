/* SPDX-License-Identifier: MIT */
/* vmrun fuzz --jobs N: N processes fuzzing from one checkpoint. */
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
#include "kernel/dev/harness.h"
#include "snapshot/checkpoint.h"
#include "snapshot/fuzzer.h"
#include "snapshot/vmsnap.h"
#include "vmrun/fuzz.h"
#include "vmrun/vmrun.h"

/* What a job tells the parent at its end. */
struct job_result {
	struct fuzzer_stats st;
	uint64_t paths, saved_crashes;
	double rps;
	int rc;
};

/* In the forked job: a machine of its own over the shared checkpoint. */
static int job_main(struct fz *z, const struct machine_config *cfg,
		    struct checkpoint *ck, const struct harness_desc *d,
		    const struct fuzzer_opts *fo, int wfd)
{
	struct job_result jr = { .rc = EXIT_VMM_ERROR };
	char err[512] = "";
	int ret, signo;
	double secs;

	ret = machine_create(cfg, &z->m, err, sizeof(err));
	if (!ret)
		ret = checkpoint_attach(ck, z->m, err, sizeof(err));
	if (!ret)
		ret = fuzzer_create_at(z->m, ck, d, fo, &fuzz_sa_ops, z, &z->f,
				       err, sizeof(err));
	if (ret < 0) {
		die_msg("fuzz job: %s", err[0] ? err : strerror(-ret));
	} else {
		fuzz_sa_ready(z);
		if (machine_run(z->m, &signo) == VM_EXIT_REQUESTED &&
		    !fuzzer_error(z->f)[0])
			jr.rc = signo ? 128 + signo : 0;
		else
			die_msg("fuzz job: %s",
				fuzzer_error(z->f)[0] ?
					fuzzer_error(z->f) :
					vm_exit_detail(machine_vm(z->m)));
		fuzzer_stats(z->f, &jr.st);
		secs = (double)(vmsnap_now_ns() - jr.st.start_ns) / 1e9;
		jr.rps = secs > 0 ? (double)jr.st.execs / secs : 0;
		jr.paths = z->paths;
		jr.saved_crashes = z->saved_crashes;
	}
	if (write(wfd, &jr, sizeof(jr)) != (ssize_t)sizeof(jr))
		jr.rc = EXIT_VMM_ERROR;
	return jr.rc;
}

static pid_t job_pids[256];
static unsigned int nr_job_pids;

/* The parent passes SIGINT and SIGTERM on to the jobs, and waits for
 * their last words (each stops cleanly on it). */
static void forward_signal(int sig)
{
	unsigned int i;

	for (i = 0; i < nr_job_pids; i++)
		kill(job_pids[i], sig);
}

/*
 * --jobs N: the checkpoint's memory is one sealed memfd; each job is a
 * process with its own VM whose RAM maps it copy-on-write, so the jobs
 * share every page none of them has written, and each resets its own.
 */
int fuzz_run_jobs(struct fz *z, const struct machine_config *mc,
		  struct checkpoint *ck, const struct harness_desc *d,
		  const struct fuzzer_opts *fo)
{
	struct machine_config cfg = { .mem = mc->mem,
				      .cpus = 1,
				      .console = "none",
				      .rng = mc->rng,
				      .dirty = mc->dirty,
				      .restore = true,
				      .ram_cow = true,
				      .ram_cow_fd = checkpoint_memfd(ck) };
	struct fuzzer_stats sum = { 0 };
	uint64_t paths = 0, saved = 0, per = 0;
	double rps = 0, secs, t0 = (double)vmsnap_now_ns();
	int fds[2], rc = 0, st;
	unsigned int i, got = 0;
	pid_t pids[256];

	if (pipe2(fds, O_CLOEXEC) < 0)
		return EXIT_VMM_ERROR;
	if (z->max_execs)
		per = (z->max_execs + z->jobs - 1) / z->jobs;
	fflush(NULL);
	for (i = 0; i < z->jobs; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(fds[0]);
			z->child = true;
			z->tty = false;
			z->rng = (z->rng + 0x9e3779b97f4a7c15ULL * (i + 1)) | 1;
			if (per)
				z->max_execs = per;
			_exit(job_main(z, &cfg, ck, d, fo, fds[1]));
		}
		if (pids[i] < 0) {
			die_msg("fuzz: fork: %s", strerror(errno));
			rc = EXIT_VMM_ERROR;
			break;
		}
	}
	close(fds[1]);
	memcpy(job_pids, pids, i * sizeof(pids[0]));
	nr_job_pids = i;
	signal(SIGINT, forward_signal);
	signal(SIGTERM, forward_signal);
	for (unsigned int k = 0; k < i; k++) {
		struct job_result jr;

		ssize_t n;

		while ((n = read(fds[0], &jr, sizeof(jr))) < 0 &&
		       errno == EINTR)
			;
		if (n != (ssize_t)sizeof(jr))
			continue;
		got++;
		sum.execs += jr.st.execs;
		sum.crashes += jr.st.crashes;
		sum.timeouts += jr.st.timeouts;
		sum.reset_pages += jr.st.reset_pages;
		sum.reset_ns += jr.st.reset_ns;
		sum.ckpt_pages = jr.st.ckpt_pages;
		paths += jr.paths;
		saved += jr.saved_crashes;
		rps += jr.rps;
		if (jr.rc && !rc)
			rc = jr.rc;
	}
	close(fds[0]);
	for (unsigned int k = 0; k < i; k++) {
		while (waitpid(pids[k], &st, 0) < 0 && errno == EINTR)
			;
		/* A job stopped by the forwarded signal says 128 + N. */
		if ((!WIFEXITED(st) || WEXITSTATUS(st)) && !rc)
			rc = WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_VMM_ERROR;
	}
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (got < i && !rc)
		rc = EXIT_VMM_ERROR;
	secs = ((double)vmsnap_now_ns() - t0) / 1e9;
	sum.ckpt_ns = 0;
	fuzz_print_final(&sum, paths, saved, secs, rps, got);
	return rc;
}
