/* SPDX-License-Identifier: MIT */
/*
 * vmrun fuzz: snapshot fuzzing of a guest that speaks the harness
 * protocol (kernel/x86/vmrun_harness.h, docs/fuzzing.md), standalone with
 * its own coverage-guided mutator, or driven by afl-fuzz through AFL's
 * fork-server protocol (--afl). The execution engine is
 * snapshot/fuzzer.c; this file has the inputs, the corpus, the crashes
 * and the reporting.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "kernel/dev/harness.h"
#include "snapshot/checkpoint.h"
#include "snapshot/fuzzer.h"
#include "snapshot/vmsnap.h"
#include "vmrun/vmrun.h"

#define DEFAULT_CMDLINE "work=fuzz"
#define QUEUE_MAX 4096
#define SEED_MAX (1u << 20)
#define STATUS_NS 250000000ULL

/* AFL++'s fork-server protocol (its include/config.h and types.h). */
#define AFL_CTL_FD 198
#define AFL_ST_FD 199
#define AFL_SHM_ENV "__AFL_SHM_ID"
#define AFL_FS_OPT_ENABLED 0x80000001u
#define AFL_FS_OPT_MAPSIZE 0x40000000u
#define AFL_FS_OPT_SET_MAPSIZE(x) (((x)-1) << 1)

static void fuzz_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun fuzz --corpus DIR --crashes DIR [OPTIONS]\n"
		"       afl-fuzz -i IN -o OUT -- vmrun fuzz --afl [OPTIONS]\n"
		"\n"
		"Boots a guest (or restores --snapshot) that speaks vmrun's fuzzing\n"
		"harness, takes a checkpoint where the guest asks, then runs one input\n"
		"per execution and puts the machine back to the checkpoint after each,\n"
		"copying back only the pages the execution wrote. The built-in\n"
		"reference guest's example target (work=fuzz) has a bug to find.\n"
		"\n"
		"  --kernel FILE      the guest (default: the built-in reference guest)\n"
		"  --cmdline STRING   its command line (default \"" DEFAULT_CMDLINE
		"\")\n"
		"  --snapshot IMAGE   restore this image instead of booting; the guest\n"
		"                     in it announces its harness once restored\n"
		"  --mem SIZE         guest RAM (default 256M); one vCPU\n"
		"  --rng              add a virtio-rng device\n"
		"  --console SPEC     the guest's console: none (default), stdio, file:PATH\n"
		"  --dirty-log        track dirty pages with KVM's dirty log (default: the\n"
		"                     dirty ring, if KVM has it; its cost follows the pages\n"
		"                     written, the log's follows the guest's size)\n"
		"  --corpus DIR       seed inputs; inputs that reach new edges are added\n"
		"  --crashes DIR      where each new crash's input is written\n"
		"  --crash-snapshots  also save the machine at each new crash, as\n"
		"                     DIR/crash-HASH.vmsnap (vmrun restore runs it)\n"
		"  --time SECONDS     stop after this long (counted from the checkpoint,\n"
		"                     which the guest must reach within ten minutes)\n"
		"  --iterations N     stop after N executions\n"
		"  --max-crashes N    stop once N different crashes are saved\n"
		"  --timeout-ms N     an execution running longer is a time-out (1000)\n"
		"  --verify-reset     after each reset compare all memory and state with\n"
		"                     the checkpoint; stop at the first difference\n"
		"  --seed N           the mutator's random seed (default: from the clock)\n"
		"  --jobs N           N processes (one per core) fuzzing from the one\n"
		"                     checkpoint: its memory is shared copy-on-write,\n"
		"                     each resets only its own writes; --iterations is\n"
		"                     shared out, the rest applies to each\n"
		"  --afl              be driven by afl-fuzz (its fork-server protocol and\n"
		"                     shared coverage map); the input comes from stdin or,\n"
		"                     with --input FILE (afl-fuzz's @@), from FILE\n"
		"  -v, --verbose      more messages\n"
		"  -h, --help         this text\n"
		"\n"
		"The last line of a run is 'fuzz: execs=N resets_per_s=R crashes=C ...'.\n"
		"exit status: 0 done (crashes or not), 1 VMM error or the guest never\n"
		"reached its checkpoint, 2 bad arguments.\n");
}

struct entry {
	uint8_t *data;
	size_t len;
};

struct fz {
	struct machine *m;
	struct fuzzer *f;
	const char *corpus, *crashes;
	bool crash_snaps, afl, tty, ready;
	uint64_t max_execs, time_ns, start_ns, last_status, max_crashes;
	uint64_t rng;
	struct entry queue[QUEUE_MAX];
	unsigned int nq, next_seed;
	uint8_t *virgin; /* AFL-style: bits of hit-count buckets not yet seen */
	uint32_t cov_size;
	uint64_t paths, saved_crashes;
	uint64_t crash_sigs[1024];
	unsigned int nr_sigs;
	/* --afl */
	uint8_t *afl_map;
	uint32_t afl_map_size;
	const char *input_path;
	pid_t stand_in;
	int status_fd;
	/* --jobs */
	unsigned int jobs;
	bool child;
	char err[512];
};

static uint64_t next_rand(struct fz *z)
{
	/* xorshift64* */
	z->rng ^= z->rng >> 12;
	z->rng ^= z->rng << 25;
	z->rng ^= z->rng >> 27;
	return z->rng * 0x2545f4914f6cdd1dULL;
}

static uint64_t hash64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3ULL;
	return h;
}

static int write_file(const char *dir, const char *prefix, uint64_t h,
		      const char *suffix, const void *data, size_t len)
{
	char path[4096];
	int fd;
	ssize_t w;

	snprintf(path, sizeof(path), "%s/%s%016llx%s", dir, prefix,
		 (unsigned long long)h, suffix);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	w = len ? write(fd, data, len) : 0;
	close(fd);
	return w == (ssize_t)len ? 0 : -EIO;
}

static bool queue_add(struct fz *z, const uint8_t *data, size_t len)
{
	struct entry *e;

	if (z->nq == QUEUE_MAX)
		return false;
	e = &z->queue[z->nq];
	e->data = malloc(len ? len : 1);
	if (!e->data)
		return false;
	memcpy(e->data, data, len);
	e->len = len;
	z->nq++;
	return true;
}

static int load_corpus(struct fz *z)
{
	DIR *d = opendir(z->corpus);
	struct dirent *de;
	uint8_t *buf;
	int ret = 0;

	if (!d)
		return -errno;
	buf = malloc(SEED_MAX);
	if (!buf) {
		closedir(d);
		return -ENOMEM;
	}
	while ((de = readdir(d)) && z->nq < QUEUE_MAX) {
		char path[4096];
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", z->corpus, de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, SEED_MAX);
		close(fd);
		if (n >= 0)
			queue_add(z, buf, (size_t)n);
	}
	closedir(d);
	free(buf);
	if (!z->nq && !queue_add(z, (const uint8_t *)"", 0))
		ret = -ENOMEM;
	return ret;
}

static const uint8_t interesting[] = { 0, 1, 0x7f, 0x80, 0xff, 0x10, 0x40 };

/* One to eight havoc steps on a copy of a queue entry. */
static size_t mutate(struct fz *z, uint8_t *buf, size_t max)
{
	const struct entry *e = &z->queue[next_rand(z) % z->nq];
	size_t len = MIN(e->len, max), pos, k, steps;

	memcpy(buf, e->data, len);
	steps = 1 + next_rand(z) % 8;
	while (steps--) {
		uint64_t r = next_rand(z);

		pos = len ? (r >> 8) % len : 0;
		switch (r % 8) {
		case 0: /* flip a bit */
			if (len)
				buf[pos] ^= (uint8_t)(1u << ((r >> 40) % 8));
			break;
		case 1: /* a random byte */
		case 2:
			if (len)
				buf[pos] = (uint8_t)(r >> 48);
			break;
		case 3: /* an interesting byte */
			if (len)
				buf[pos] = interesting[(r >> 48) %
						       sizeof(interesting)];
			break;
		case 4: /* add or subtract a little */
			if (len)
				buf[pos] += (uint8_t)((r >> 48) % 35) - 17;
			break;
		case 5: /* insert a byte */
			if (len < max) {
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = (uint8_t)(r >> 48);
				len++;
			}
			break;
		case 6: /* delete a byte */
			if (len > 1) {
				memmove(buf + pos, buf + pos + 1,
					len - pos - 1);
				len--;
			}
			break;
		case 7: /* splice in the tail of another entry */
			e = &z->queue[(r >> 16) % z->nq];
			k = e->len ? (r >> 32) % e->len : 0;
			if (pos <= len && e->len > k) {
				size_t n = MIN(e->len - k, max - pos);

				memcpy(buf + pos, e->data + k, n);
				len = MAX(len, pos + n);
			}
			break;
		}
	}
	return len;
}

static uint8_t bucket(uint8_t c)
{
	if (c <= 3)
		return c == 3 ? 4 : c;
	if (c <= 7)
		return 8;
	if (c <= 15)
		return 16;
	if (c <= 31)
		return 32;
	if (c <= 127)
		return 64;
	return 128;
}

/* Folds the execution's counters into the virgin map; true if new. */
static bool new_coverage(struct fz *z, const uint8_t *cov, uint32_t n,
			 uint64_t *sig)
{
	bool fresh = false;
	uint32_t i;

	*sig = 0xcbf29ce484222325ULL;
	for (i = 0; i < n; i++) {
		uint8_t b;

		if (!cov[i])
			continue;
		b = bucket(cov[i]);
		*sig = (*sig ^ (i * 131u + b)) * 0x100000001b3ULL;
		if (z->virgin[i] & b) {
			z->virgin[i] &= (uint8_t)~b;
			fresh = true;
		}
	}
	return fresh;
}

static void print_final(const struct fuzzer_stats *st, uint64_t paths,
			uint64_t saved, double secs, double rps,
			unsigned int jobs)
{
	printf("fuzz: execs=%llu resets_per_s=%.0f crashes=%llu "
	       "unique_crashes=%llu timeouts=%llu paths=%llu "
	       "pages_per_reset=%.1f reset_us=%.1f checkpoint_ms=%.3f "
	       "checkpoint_pages=%llu seconds=%.3f jobs=%u\n",
	       (unsigned long long)st->execs, rps,
	       (unsigned long long)st->crashes, (unsigned long long)saved,
	       (unsigned long long)st->timeouts, (unsigned long long)paths,
	       st->execs ? (double)st->reset_pages / (double)st->execs : 0.0,
	       st->execs ? (double)st->reset_ns / 1e3 / (double)st->execs : 0.0,
	       (double)st->ckpt_ns / 1e6, (unsigned long long)st->ckpt_pages,
	       secs, jobs);
	fflush(stdout);
}

static void print_status(struct fz *z, bool final)
{
	struct fuzzer_stats st;
	uint64_t now = vmsnap_now_ns(), el;
	double secs, rps;

	fuzzer_stats(z->f, &st);
	el = st.start_ns && now > st.start_ns ? now - st.start_ns : 0;
	secs = (double)el / 1e9;
	rps = secs > 0 ? (double)st.execs / secs : 0;
	if (!final) {
		fprintf(stderr,
			"\r\033[Kfuzz: %.0fs execs=%llu (%.0f/s) paths=%llu "
			"crashes=%llu timeouts=%llu",
			secs, (unsigned long long)st.execs, rps,
			(unsigned long long)z->paths,
			(unsigned long long)st.crashes,
			(unsigned long long)st.timeouts);
		return;
	}
	if (z->tty)
		fputs("\r\033[K", stderr);
	print_final(&st, z->paths, z->saved_crashes, secs, rps, 1);
}

static bool sig_seen(struct fz *z, uint64_t sig)
{
	unsigned int i;

	for (i = 0; i < z->nr_sigs; i++)
		if (z->crash_sigs[i] == sig)
			return true;
	if (z->nr_sigs < ARRAY_SIZE(z->crash_sigs))
		z->crash_sigs[z->nr_sigs++] = sig;
	return false;
}

static void save_crash(struct fz *z, const struct fuzz_exec *e, uint64_t sig)
{
	uint64_t h = hash64(e->input, e->len);
	struct vmsnap_save_opts so = { .codec = IMAGE_CODEC_ZSTD };
	struct vmsnap_stats vs;
	char path[4096], err[512];
	int ret;

	if (sig_seen(z, sig ^ e->code))
		return;
	z->saved_crashes++;
	ret = write_file(z->crashes, "crash-", h, "", e->input, e->len);
	if (ret < 0)
		pr_warn("fuzz: writing a crash to %s: %s", z->crashes,
			strerror(-ret));
	pr_info("fuzz: crash after %llu executions (%s): %s/crash-%016llx",
		(unsigned long long)e->n + 1, e->detail, z->crashes,
		(unsigned long long)h);
	if (!z->crash_snaps)
		return;
	snprintf(path, sizeof(path), "%s/crash-%016llx.vmsnap", z->crashes,
		 (unsigned long long)h);
	err[0] = 0;
	if (vmsnap_save_file(z->m, path, &so, &vs, err, sizeof(err)) < 0)
		pr_warn("fuzz: saving the crash state: %s", err);
}

/* Standalone: inputs from the queue, mutated; seeds first, unmutated. */
static bool sa_next(void *opaque, uint8_t *buf, size_t max, size_t *len)
{
	struct fz *z = opaque;
	struct fuzzer_stats st;
	uint64_t now;

	if (z->jobs > 1 && !z->child)
		return false; /* the checkpoint is taken: the jobs take over */
	fuzzer_stats(z->f, &st);
	now = vmsnap_now_ns();
	if ((z->max_execs && st.execs >= z->max_execs) ||
	    (z->time_ns && now - st.start_ns >= z->time_ns) ||
	    (z->max_crashes && z->saved_crashes >= z->max_crashes))
		return false;
	if (z->tty && now - z->last_status >= STATUS_NS) {
		z->last_status = now;
		print_status(z, false);
	}
	if (z->next_seed < z->nq) {
		const struct entry *e = &z->queue[z->next_seed++];

		*len = MIN(e->len, max);
		memcpy(buf, e->data, *len);
		return true;
	}
	*len = mutate(z, buf, max);
	return true;
}

static void sa_done(void *opaque, const struct fuzz_exec *e)
{
	struct fz *z = opaque;
	uint64_t sig = 0;
	bool fresh = false;

	if (e->cov && z->virgin)
		fresh = new_coverage(z, e->cov, e->cov_size, &sig);
	if (e->outcome == FUZZ_CRASH) {
		save_crash(z, e, sig);
		return;
	}
	if (fresh && e->outcome == FUZZ_OK) {
		z->paths++;
		if (queue_add(z, e->input, e->len) && z->corpus &&
		    write_file(z->corpus, "cov-", hash64(e->input, e->len), "",
			       e->input, e->len) < 0)
			pr_warn("fuzz: cannot add an input to %s", z->corpus);
	}
}

static void sa_ready(void *opaque)
{
	struct fz *z = opaque;
	struct fuzzer_stats st;

	fuzzer_stats(z->f, &st);
	z->cov_size = st.cov_size;
	if (st.cov_size) {
		z->virgin = malloc(st.cov_size);
		if (z->virgin)
			memset(z->virgin, 0xff, st.cov_size);
	}
	z->ready = true;
	z->last_status = vmsnap_now_ns();
	pr_info("fuzz: checkpoint taken (%llu pages, %.1f ms); %u seeds",
		(unsigned long long)st.ckpt_pages, (double)st.ckpt_ns / 1e6,
		z->nq);
}

static const struct fuzzer_ops sa_ops = {
	.next = sa_next,
	.done = sa_done,
	.ready = sa_ready,
};

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
	return write(AFL_ST_FD, &v, 4) == 4 ? 0 : -EPIPE;
	(void)z;
}

static bool afl_next(void *opaque, uint8_t *buf, size_t max, size_t *len)
{
	struct fz *z = opaque;
	uint32_t was_killed;
	struct stat sb;
	ssize_t n;
	int fd;

	if (read(AFL_CTL_FD, &was_killed, 4) != 4)
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
		pr_warn("fuzz: no afl-fuzz on fd %d", AFL_ST_FD);
	z->ready = true;
}

static const struct fuzzer_ops afl_ops = {
	.next = afl_next,
	.done = afl_done,
	.ready = afl_ready,
};

/* The checkpoint must come within a while of the start. */
static void attach_deadline(struct machine *m, int fd, void *opaque)
{
	struct fz *z = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
	machine_unwatch_fd(m, fd);
	if (!z->ready)
		vm_stop_detail(machine_vm(m), VM_EXIT_ERROR,
			       "the guest did not reach its harness checkpoint "
			       "(no work=fuzz, or not a harness guest?)");
}

static int parse_u64_arg(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -EINVAL : 0;
}

static int make_machine(struct machine_config *cfg, const char *snapshot,
			struct machine **m, char *err, size_t errlen)
{
	struct vmsnap_restore_opts ro = { 0 };
	struct vmsnap_stats vs;

	if (!snapshot)
		return machine_create(cfg, m, err, errlen);
	ro.console = cfg->console;
	return vmsnap_restore_file(snapshot, &ro, m, &vs, err, errlen);
}

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
		ret = fuzzer_create_at(z->m, ck, d, fo, &sa_ops, z, &z->f, err,
				       sizeof(err));
	if (ret < 0) {
		die_msg("fuzz job: %s", err[0] ? err : strerror(-ret));
	} else {
		sa_ready(z);
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
static int run_jobs(struct fz *z, const struct machine_config *mc,
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
	print_final(&sum, paths, saved, secs, rps, got);
	return rc;
}

int cmd_fuzz(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "mem", required_argument, NULL, 'm' },
		{ "rng", no_argument, NULL, 'r' },
		{ "console", required_argument, NULL, 'o' },
		{ "dirty-log", no_argument, NULL, 'L' },
		{ "corpus", required_argument, NULL, 'C' },
		{ "crashes", required_argument, NULL, 'X' },
		{ "crash-snapshots", no_argument, NULL, 'S' },
		{ "time", required_argument, NULL, 't' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "max-crashes", required_argument, NULL, 'M' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "verify-reset", no_argument, NULL, 'V' },
		{ "seed", required_argument, NULL, 'e' },
		{ "afl", no_argument, NULL, 'A' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "input", required_argument, NULL, 'i' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct machine_config cfg = { .mem = 256ULL << 20,
				      .cpus = 1,
				      .console = "none",
				      .dirty = DIRTY_MODE_RING };
	struct fuzzer_opts fo = { .timeout_ms = 1000 };
	const char *kernel_path = NULL, *snapshot = NULL;
	struct itimerspec its = { .it_value = { 600, 0 } };
	bool cmdline_set = false, dirty_log = false;
	struct fz *z;
	void *kdata = NULL;
	size_t ksize = 0;
	uint64_t v;
	char err[512];
	int c, ret, verbose = 0, signo, tfd;
	enum vm_exit_reason r;

	z = calloc(1, sizeof(*z));
	if (!z)
		return EXIT_VMM_ERROR;
	z->rng = vmsnap_now_ns() | 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kernel_path = optarg;
			break;
		case 'c':
			cfg.cmdline = optarg;
			cmdline_set = true;
			break;
		case 's':
			snapshot = optarg;
			break;
		case 'm':
			if (parse_size(optarg, &cfg.mem) < 0) {
				die_msg("--mem '%s': expected a size such as 512M or 2G",
					optarg);
				goto usage;
			}
			break;
		case 'r':
			cfg.rng = true;
			break;
		case 'o':
			cfg.console = optarg;
			break;
		case 'L':
			dirty_log = true;
			break;
		case 'C':
			z->corpus = optarg;
			break;
		case 'X':
			z->crashes = optarg;
			break;
		case 'S':
			z->crash_snaps = true;
			break;
		case 't':
			if (parse_u64_arg(optarg, &v) || !v || v > 1000000) {
				die_msg("--time '%s': expected 1..1000000 seconds",
					optarg);
				goto usage;
			}
			z->time_ns = v * 1000000000ULL;
			break;
		case 'n':
			if (parse_u64_arg(optarg, &z->max_execs) ||
			    !z->max_execs) {
				die_msg("--iterations '%s': expected a count of 1 or more",
					optarg);
				goto usage;
			}
			break;
		case 'M':
			if (parse_u64_arg(optarg, &z->max_crashes) ||
			    !z->max_crashes) {
				die_msg("--max-crashes '%s': expected a count of 1 or more",
					optarg);
				goto usage;
			}
			break;
		case 'T':
			if (parse_uint(optarg, 3600000, &fo.timeout_ms)) {
				die_msg("--timeout-ms '%s': expected 1..3600000",
					optarg);
				goto usage;
			}
			break;
		case 'V':
			fo.verify_reset = true;
			break;
		case 'e':
			if (parse_u64_arg(optarg, &z->rng)) {
				die_msg("--seed '%s': expected a number",
					optarg);
				goto usage;
			}
			z->rng = z->rng * 2 + 1;
			break;
		case 'A':
			z->afl = true;
			break;
		case 'j':
			if (parse_uint(optarg, 256, &z->jobs)) {
				die_msg("--jobs '%s': expected 1..256", optarg);
				goto usage;
			}
			break;
		case 'i':
			z->input_path = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			fuzz_usage(stdout);
			free(z);
			return 0;
		default:
			fuzz_usage(stderr);
			goto usage;
		}
	}
	if (optind < argc) {
		die_msg("fuzz: unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
	if (!z->afl && (!z->corpus || !z->crashes)) {
		die_msg("fuzz: --corpus DIR and --crashes DIR are needed "
			"(or --afl, under afl-fuzz)");
		goto usage;
	}
	if (z->afl && (z->corpus || z->crashes || z->time_ns || z->max_execs ||
		       z->max_crashes)) {
		die_msg("fuzz: with --afl, afl-fuzz has the corpus and decides "
			"when to stop: no --corpus, --crashes, --time, "
			"--iterations or --max-crashes");
		goto usage;
	}
	if (z->afl &&
	    (fcntl(AFL_CTL_FD, F_GETFD) < 0 || fcntl(AFL_ST_FD, F_GETFD) < 0)) {
		die_msg("fuzz --afl: no afl-fuzz fork-server pipes on fds %d "
			"and %d; run it as afl-fuzz -i IN -o OUT -- vmrun fuzz "
			"--afl",
			AFL_CTL_FD, AFL_ST_FD);
		goto usage;
	}
	if (z->corpus) {
		ret = load_corpus(z);
		if (ret < 0) {
			die_msg("--corpus %s: %s", z->corpus, strerror(-ret));
			goto usage;
		}
	}
	if (z->crashes && access(z->crashes, W_OK) < 0) {
		die_msg("--crashes %s: %s", z->crashes, strerror(errno));
		goto usage;
	}
	if (snapshot && (kernel_path || cmdline_set)) {
		die_msg("fuzz: --snapshot restores a machine: no --kernel or "
			"--cmdline with it");
		goto usage;
	}
	if (kernel_path) {
		ret = read_file(kernel_path, &kdata, &ksize);
		if (ret < 0) {
			die_msg("--kernel %s: %s", kernel_path,
				ret == -EINVAL ? "not a regular file" :
						 strerror(-ret));
			goto usage;
		}
		cfg.kernel = kdata;
		cfg.kernel_size = ksize;
		cfg.kernel_name = kernel_path;
	} else if (!snapshot) {
		if (!builtin_guest) {
			die_msg("this build has no built-in guest; use --kernel");
			goto usage;
		}
		cfg.kernel = builtin_guest;
		cfg.kernel_size = *builtin_guest_size;
		cfg.kernel_name = "the built-in reference guest";
		if (!cmdline_set)
			cfg.cmdline = DEFAULT_CMDLINE;
	}
	if (dirty_log)
		cfg.dirty = DIRTY_MODE_LOG;
	z->tty = !z->afl && isatty(STDERR_FILENO);

	ret = make_machine(&cfg, snapshot, &z->m, err, sizeof(err));
	if (ret < 0 && !dirty_log && !snapshot &&
	    cfg.dirty == DIRTY_MODE_RING && ret != -EINVAL) {
		/* No dirty ring in this KVM: the log does it, at a cost. */
		pr_info("fuzz: no dirty ring (%s); using the dirty log", err);
		cfg.dirty = DIRTY_MODE_LOG;
		ret = make_machine(&cfg, snapshot, &z->m, err, sizeof(err));
	}
	if (ret < 0) {
		die_msg("%s", err);
		ret = ret == -EINVAL || ret == -ENOENT || ret == -EBADMSG ||
				      ret == -EPROTONOSUPPORT ?
			      EXIT_USAGE :
			      EXIT_VMM_ERROR;
		goto out_free;
	}
	err[0] = 0;
	ret = fuzzer_create(z->m, &fo, z->afl ? &afl_ops : &sa_ops, z, &z->f,
			    err, sizeof(err));
	if (ret < 0) {
		die_msg("%s", err[0] ? err : strerror(-ret));
		machine_destroy(z->m);
		ret = ret == -EINVAL ? EXIT_USAGE : EXIT_VMM_ERROR;
		goto out_free;
	}
	/* The guest gets ten minutes to reach its checkpoint. */
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (tfd >= 0 && (timerfd_settime(tfd, 0, &its, NULL) < 0 ||
			 machine_watch_fd(z->m, tfd, attach_deadline, z) < 0)) {
		close(tfd);
		tfd = -1;
	}
	r = machine_run(z->m, &signo);
	if (tfd >= 0)
		close(tfd);
	ret = 0;
	if (fuzzer_error(z->f)[0]) {
		die_msg("%s", fuzzer_error(z->f));
		ret = EXIT_VMM_ERROR;
	} else if (!z->ready) {
		die_msg("the guest stopped before its harness checkpoint: %s",
			vm_exit_detail(machine_vm(z->m)));
		ret = EXIT_VMM_ERROR;
	} else if (r != VM_EXIT_REQUESTED) {
		die_msg("%s", vm_exit_detail(machine_vm(z->m)));
		ret = EXIT_VMM_ERROR;
	} else if (signo) {
		ret = 128 + signo;
	}
	if (!ret && z->ready && z->jobs > 1) {
		const struct machine_config *mc = machine_config(z->m);
		struct machine_config keep = { .mem = mc->mem,
					       .rng = mc->rng,
					       .dirty = mc->dirty };
		struct harness_desc d;
		struct checkpoint *ck = fuzzer_take_checkpoint(z->f, &d);

		if (mc->nr_disks || mc->nr_nets) {
			die_msg("fuzz --jobs: the machine has disks or network "
				"cards, which jobs cannot share");
			ret = EXIT_USAGE;
			checkpoint_free(ck);
			ck = NULL;
		} else {
			checkpoint_detach(ck);
			fuzzer_free(z->f);
			z->f = NULL;
			machine_destroy(z->m);
			z->m = NULL;
			ret = run_jobs(z, &keep, ck, &d, &fo);
			checkpoint_free(ck);
		}
	} else if (z->ready && !z->afl) {
		print_status(z, true);
	}
	if (z->stand_in > 0) {
		kill(z->stand_in, SIGKILL);
		waitpid(z->stand_in, NULL, 0);
	}
	if (z->f)
		fuzzer_free(z->f);
	if (z->m)
		machine_destroy(z->m);
	goto out_free;

usage:
	ret = EXIT_USAGE;
out_free:
	if (kdata)
		munmap(kdata, ksize);
	for (unsigned int i = 0; i < z->nq; i++)
		free(z->queue[i].data);
	free(z->virgin);
	free(z);
	return ret;
}
