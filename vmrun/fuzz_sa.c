/* SPDX-License-Identifier: MIT */
/*
 * vmrun fuzz, standalone: the queue (seeds, then inputs that reached new
 * edges), a havoc mutator, AFL-style hit-count buckets, crash saving and
 * the status and last lines.
 */
#include <dirent.h>
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

int fuzz_load_corpus(struct fz *z)
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
		uint64_t w;
		uint8_t b;

		/* Most counters are zero: skip them eight at a time. */
		if (!(i & 7) && n - i >= 8) {
			memcpy(&w, cov + i, sizeof(w));
			if (!w) {
				i += 7;
				continue;
			}
		}
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

void fuzz_print_final(const struct fuzzer_stats *st, uint64_t paths,
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

void fuzz_print_status(struct fz *z, bool final)
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
	fuzz_print_final(&st, z->paths, z->saved_crashes, secs, rps, 1);
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
		fuzz_print_status(z, false);
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

void fuzz_sa_ready(void *opaque)
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

const struct fuzzer_ops fuzz_sa_ops = {
	.next = sa_next,
	.done = sa_done,
	.ready = fuzz_sa_ready,
};
