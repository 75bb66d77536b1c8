/* SPDX-License-Identifier: MIT */
/*
 * Saving a machine: see vmsnap.h. This file holds the capture of a frozen
 * machine's state, the frozen and the live (pre-copy) save, the chain's
 * base checks and the save to a file or a stream; the sections they write
 * are in vmsnap_sections.c. Restoring is in vmsnap_restore.c.
 */
#include "snapshot/vmsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "kernel/x86/vcpu_state.h"
#include "kernel/x86/vm_state.h"
#include "machine.pb-c.h"
#include "snapshot/pool.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap_priv.h"

uint64_t vmsnap_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

unsigned int vmsnap_threads(unsigned int threads)
{
	return threads ? threads : pool_default_threads(VMSNAP_DEFAULT_THREADS);
}

static void capture_free(struct capture *cs)
{
	unsigned int i;

	for (i = 0; cs->cpus && i < cs->nr; i++)
		if (cs->cpus[i])
			x86_vcpu_state_free(cs->cpus[i]);
	free(cs->cpus);
	if (cs->vms)
		x86_vm_state_free(cs->vms);
	memset(cs, 0, sizeof(*cs));
}

static int capture(struct machine *m, struct capture *cs, char *err,
		   size_t errlen)
{
	struct vm *vm = machine_vm(m);
	unsigned int i;
	int ret;

	cs->nr = vm_nr_vcpus(vm);
	cs->cpus = calloc(cs->nr, sizeof(*cs->cpus));
	if (!cs->cpus)
		return -ENOMEM;
	ret = x86_vm_state_save(vm, &cs->vms);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "capturing the VM state: %s", strerror(-ret));
	for (i = 0; i < cs->nr; i++) {
		ret = x86_vcpu_state_save(vm_vcpu(vm, i), &cs->cpus[i]);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "capturing vCPU %u's state: %s", i,
					  strerror(-ret));
	}
	return 0;
}

int vmsnap_save(struct machine *m, struct stream *s,
		const struct vmsnap_save_opts *o, const uint64_t *dirty,
		struct vmsnap_stats *st, char *err, size_t errlen)
{
	struct capture cs = { 0 };
	struct image *img = NULL;
	int ret;

	/* Capture everything first: a failure writes nothing. */
	ret = capture(m, &cs, err, errlen);
	if (!ret)
		ret = begin_image(m, s, o, dirty != NULL, false, &cs, &img, err,
				  errlen);
	if (!ret)
		ret = put_state(img, m, &cs, err, errlen);
	if (!ret)
		ret = put_pages(img, m, dirty, o, err, errlen);
	if (!ret)
		ret = end_image(img, m, s, st, err, errlen);
	image_destroy(img);
	capture_free(&cs);
	return ret;
}

static int freeze_vm(struct machine *m, char *err, size_t errlen)
{
	int ret = machine_freeze(m);

	return ret < 0 ? err_printf(err, errlen, ret, "freezing the VM: %s",
				    strerror(-ret)) :
			 0;
}

/* A dirty epoch taken with the machine frozen a moment: moves the pages
 * written since the last one into @round and adds them to @all. */
static int collect_round(struct machine *m, uint64_t *round, uint64_t *all,
			 size_t nbits, struct capture *cs, char *err,
			 size_t errlen)
{
	int ret = freeze_vm(m, err, errlen);

	if (ret < 0)
		return ret;
	ret = machine_dirty_collect(m, round);
	if (ret < 0)
		err_printf(err, errlen, ret, "dirty tracking: %s",
			   strerror(-ret));
	if (!ret && cs)
		ret = capture(m, cs, err, errlen);
	machine_thaw(m);
	if (!ret)
		bitmap_or_at_atomic(all, 0, round, nbits);
	return ret;
}

/* What a live save's last running round wrote, and how fast. */
struct live_round {
	uint64_t pages, bytes, ns;
};

/*
 * Writes a live round (@dirty, or all of memory) and times it; @lr->pages
 * counts the pages that went as data, since zero pages cost next to
 * nothing and would make the rate per page look far better than what is
 * dirty (pages the guest wrote) will cost.
 */
static int live_put(struct image *img, struct machine *m, struct stream *s,
		    const uint64_t *dirty, const struct vmsnap_save_opts *o,
		    struct live_round *lr, char *err, size_t errlen)
{
	uint64_t t = vmsnap_now_ns(), b = stream_bytes_written(s), p0, z0, p1,
		 z1;
	int ret;

	image_counts(img, &p0, &z0);
	ret = put_pages(img, m, dirty, o, err, errlen);
	/* The round is timed whole: what the workers hold goes out too. */
	if (!ret && image_drain(img) < 0)
		ret = err_printf(err, errlen, image_drain(img),
				 "writing memory: %s", image_error(img));

	if (!ret) {
		ret = stream_flush(s);
		if (ret < 0)
			err_printf(err, errlen, ret, "writing memory: %s",
				   strerror(-ret));
	}
	if (!ret && o->drain)
		ret = o->drain(o->opaque, s, err, errlen);
	image_counts(img, &p1, &z1);
	lr->pages = (p1 - p0) - (z1 - z0);
	lr->bytes = stream_bytes_written(s) - b;
	lr->ns = vmsnap_now_ns() - t;
	return ret;
}

/*
 * How many pages the frozen last round may hold: VMSNAP_LIVE_FINAL_PAGES,
 * or with a downtime target as many as the last round's rate (its bytes
 * per page, its bytes per second) sends in that time.
 */
static uint64_t final_pages(const struct vmsnap_save_opts *o,
			    const struct live_round *lr)
{
	double per_page, per_s;

	if (!o->downtime_ns || !lr->pages || !lr->ns)
		return VMSNAP_LIVE_FINAL_PAGES;
	per_page = (double)lr->bytes / (double)lr->pages;
	per_s = (double)lr->bytes * 1e9 / (double)lr->ns;
	if (per_page < 1)
		per_page = 1;
	return (uint64_t)(per_s * ((double)o->downtime_ns / 1e9) / per_page);
}

/* The image is complete: make it durable, then let the caller commit it
 * (rename it into place, or hear the migration's destination accept
 * it), all before the machine thaws. */
static int sync_and_commit(struct stream *s, const struct vmsnap_save_opts *o,
			   char *err, size_t errlen)
{
	int ret = stream_sync(s);

	if (ret < 0)
		return err_printf(err, errlen, ret, "writing the image: %s",
				  strerror(-ret));
	return o->commit ? o->commit(o->commit_opaque, err, errlen) : 0;
}

/*
 * A live save (pre-copy into the file): memory is written while the
 * vCPUs run, then written again as far as the guest dirtied it, round
 * after round, until what is left is small or stops shrinking; only the
 * last round, the state and END are written with the machine frozen,
 * and the thaw comes after the file is durable. Every page collected is
 * in @all, for giving back if the save fails; @st->frozen_ns is the final
 * freeze.
 */
static int save_live(struct machine *m, struct stream *s,
		     const struct vmsnap_save_opts *o, uint64_t *all,
		     struct vmsnap_stats *st, char *err, size_t errlen)
{
	size_t nbits = mem_seg_pages(machine_ram(m));
	uint64_t *round = bitmap_alloc(nbits), t1, n, prev = UINT64_MAX;
	unsigned int r, max_rounds = o->live_max_rounds ?
					     o->live_max_rounds :
					     VMSNAP_LIVE_MAX_ROUNDS;
	struct capture cs = { 0 };
	struct live_round lr = { 0 };
	struct vmsnap_round ri;
	struct image *img = NULL;
	bool end;
	int ret;

	if (!round)
		return -ENOMEM;
	/* Round 0: everything (or, incremental, all since the last save). */
	ret = collect_round(m, round, all, nbits, &cs, err, errlen);
	if (!ret)
		ret = begin_image(m, s, o, o->incremental, true, &cs, &img, err,
				  errlen);
	capture_free(&cs);
	if (!ret && o->begun)
		ret = o->begun(o->opaque, s, err, errlen);
	if (!ret)
		ret = live_put(img, m, s, o->incremental ? round : NULL, o, &lr,
			       err, errlen);
	for (r = 1; !ret && r <= max_rounds; r++) {
		ret = collect_round(m, round, all, nbits, NULL, err, errlen);
		if (ret < 0)
			break;
		n = bitmap_weight(round, nbits);
		ri = (struct vmsnap_round){ .round = r - 1,
					    .pages = lr.pages,
					    .bytes = lr.bytes,
					    .ns = lr.ns,
					    .next = n,
					    .final_pages = final_pages(o, &lr),
					    .shrinking = n < prev - prev / 8 };
		st->rounds = r;
		/* Small enough, or not shrinking: the rest goes frozen. */
		end = r >= o->live_rounds &&
		      (n <= ri.final_pages || !ri.shrinking);
		ret = o->round ? o->round(o->opaque, &ri, err, errlen) :
				 VMSNAP_ROUND_AUTO;
		if (ret < 0)
			break;
		if (ret != VMSNAP_ROUND_AUTO)
			end = ret == VMSNAP_ROUND_FINAL;
		ret = 0;
		if (end)
			break;
		ret = live_put(img, m, s, round, o, &lr, err, errlen);
		/* Written: only what comes after goes in the last round. */
		bitmap_zero(round, nbits);
		prev = n;
	}
	if (ret < 0)
		goto out;
	ret = freeze_vm(m, err, errlen);
	if (ret < 0)
		goto out;
	t1 = vmsnap_now_ns();
	{
		/* What was left, and what the guest wrote since. */
		uint64_t *last = bitmap_alloc(nbits);

		ret = last ? machine_dirty_collect(m, last) : -ENOMEM;
		if (ret < 0) {
			err_printf(err, errlen, ret, "dirty tracking: %s",
				   strerror(-ret));
		} else {
			bitmap_or_at_atomic(all, 0, last, nbits);
			bitmap_or_at_atomic(round, 0, last, nbits);
		}
		bitmap_free(last);
	}
	if (!ret)
		ret = capture(m, &cs, err, errlen);
	if (!ret)
		ret = put_pages(img, m, round, o, err, errlen);
	if (!ret)
		ret = put_config(img, m, true, err, errlen);
	if (!ret)
		ret = put_state(img, m, &cs, err, errlen);
	if (!ret)
		ret = end_image(img, m, s, st, err, errlen);
	if (!ret)
		ret = sync_and_commit(s, o, err, errlen);
	machine_thaw(m);
	st->frozen_ns = vmsnap_now_ns() - t1;
out:
	image_destroy(img);
	capture_free(&cs);
	bitmap_free(round);
	return ret;
}

int vmsnap_find_base(const char *path, const struct image_header *h, char *base,
		     size_t blen, char *err, size_t errlen)
{
	const char *rec = h->base_path ? h->base_path : "";
	char *copy = strdup(path), *rcopy = strdup(rec);
	uint64_t hash = 0;
	int fd, ret = -EINVAL;
	bool found = false;
	struct stat sb;

	if (!copy || !rcopy) {
		free(copy);
		free(rcopy);
		return -ENOMEM;
	}
	/* The recorded path first, then the same name beside @path. */
	for (int i = 0; i < 2 && !found; i++) {
		if (i == 0 && !rec[0])
			continue;
		if (i == 0)
			snprintf(base, blen, "%s", rec);
		else
			snprintf(base, blen, "%s/%s", dirname(copy),
				 basename(rcopy));
		if (i == 1 && (!rec[0] || !strcmp(base, rec)))
			break;
		/* Never block on a FIFO or read a device a hostile image names. */
		fd = open(base, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		found = true;
		ret = fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) ?
			      -EBADMSG :
			      image_file_content_hash(fd, &hash);
		close(fd);
	}
	if (!found)
		ret = err_printf(
			err, errlen, -EINVAL,
			"%s: its base image %s (content hash %016llx) is missing",
			path, rec[0] ? rec : "(no path recorded)",
			(unsigned long long)h->base_hash);
	else if (ret < 0)
		ret = err_printf(err, errlen, -EINVAL,
				 "%s: its base %s is not a complete image",
				 path, base);
	else if (hash != h->base_hash)
		ret = err_printf(
			err, errlen, -EINVAL,
			"%s: %s is not its base: content hash %016llx, the chain names %016llx",
			path, base, (unsigned long long)hash,
			(unsigned long long)h->base_hash);
	free(copy);
	free(rcopy);
	return ret;
}

/* Can an incremental image at @path go over the base @c names? */
static int check_base(const struct vmsnap_chain *c, const char *path, char *err,
		      size_t errlen)
{
	struct image_header h = { 0 };
	char base[4096];

	if (!c || !c->valid)
		return err_printf(
			err, errlen, -EINVAL,
			"no base for an incremental image: save a full image of this VM first");
	if (!strcmp(c->path, path))
		return err_printf(
			err, errlen, -EINVAL,
			"%s is the base of this incremental image: save it elsewhere",
			path);
	if (c->links >= VMSNAP_MAX_CHAIN)
		return err_printf(
			err, errlen, -EINVAL,
			"the chain has %u images, the most a restore follows: save a full image",
			c->links);
	h.has_base = true;
	h.base_hash = c->hash;
	h.base_path = c->path;
	return vmsnap_find_base(path, &h, base, sizeof(base), err, errlen);
}

static int fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * A save onto @s, which is open: the machine frozen (or, live, frozen at
 * the end), the image written and synced, @o->commit asked, the machine
 * thawed. On failure every dirty page it collected is given back, so the
 * next save still writes them.
 */
static int save_on(struct machine *m, struct stream *s,
		   const struct vmsnap_save_opts *o, struct vmsnap_stats *st,
		   char *err, size_t errlen)
{
	uint64_t *dirty = NULL, t1;
	bool collected = false;
	int ret = 0;

	if ((o->chain || o->live) &&
	    !(dirty = bitmap_alloc(mem_seg_pages(machine_ram(m)))))
		return -ENOMEM;
	/* A lazily restored VM's memory must be whole before it is read. */
	ret = machine_mem_wait(m);
	if (ret < 0) {
		err_printf(
			err, errlen, ret,
			"the guest's memory could not be loaded from its image");
		goto out;
	}
	if (o->live) {
		/* Whatever it collected is in @dirty, to give back. */
		collected = true;
		ret = save_live(m, s, o, dirty, st, err, errlen);
		goto out;
	}
	ret = freeze_vm(m, err, errlen);
	if (ret < 0)
		goto out;
	t1 = vmsnap_now_ns();
	if (o->chain) {
		ret = machine_dirty_collect(m, dirty);
		if (ret < 0)
			err_printf(err, errlen, ret, "dirty tracking: %s",
				   strerror(-ret));
		collected = !ret;
	}
	if (!ret)
		ret = vmsnap_save(m, s, o, o->incremental ? dirty : NULL, st,
				  err, errlen);
	if (!ret)
		ret = sync_and_commit(s, o, err, errlen);
	machine_thaw(m);
	st->frozen_ns = vmsnap_now_ns() - t1;
out:
	if (ret < 0 && collected)
		machine_dirty_return(m, dirty);
	bitmap_free(dirty);
	return ret;
}

int vmsnap_save_stream(struct machine *m, struct stream *s,
		       const struct vmsnap_save_opts *o,
		       struct vmsnap_stats *st, char *err, size_t errlen)
{
	uint64_t t0 = vmsnap_now_ns();
	int ret;

	memset(st, 0, sizeof(*st));
	if (o->incremental || o->chain)
		return err_printf(err, errlen, -EINVAL,
				  "a stream holds a whole machine, not a link "
				  "of a chain");
	ret = save_on(m, s, o, st, err, errlen);
	st->ns = vmsnap_now_ns() - t0;
	return ret;
}

struct rename_ctx {
	const char *tmp, *path;
};

/* The file save's commit: the complete image takes the path's place. */
static int commit_rename(void *opaque, char *err, size_t errlen)
{
	const struct rename_ctx *r = opaque;
	int ret;

	if (rename(r->tmp, r->path) == 0)
		return 0;
	ret = -errno;
	return err_printf(err, errlen, ret, "renaming %s to %s: %s", r->tmp,
			  r->path, strerror(-ret));
}

int vmsnap_save_file(struct machine *m, const char *path,
		     const struct vmsnap_save_opts *o, struct vmsnap_stats *st,
		     char *err, size_t errlen)
{
	uint64_t t0 = vmsnap_now_ns();
	struct vmsnap_chain *chain = o->chain;
	struct vmsnap_save_opts fo = *o;
	struct rename_ctx rc;
	struct stream *s = NULL;
	char tmp[4096];
	struct stat sb;
	int ret;

	memset(st, 0, sizeof(*st));
	if (!path[0] || (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)))
		return err_printf(err, errlen, -EINVAL,
				  "%s: exists and is not a regular file", path);
	if (strlen(path) >= sizeof(chain->path))
		return err_printf(err, errlen, -ENAMETOOLONG,
				  "%s: path too long", path);
	if (o->incremental) {
		ret = check_base(chain, path, err, errlen);
		if (ret < 0)
			return ret;
	}
	if (o->live && !chain)
		return err_printf(err, errlen, -EINVAL,
				  "a live save needs dirty tracking");
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path,
			     (int)getpid()) >= sizeof(tmp))
		return err_printf(err, errlen, -ENAMETOOLONG,
				  "%s: path too long", path);
	ret = stream_open_file_write(tmp, &s);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s: %s", tmp,
				  strerror(-ret));
	rc.tmp = tmp;
	rc.path = path;
	fo.commit = commit_rename;
	fo.commit_opaque = &rc;
	ret = save_on(m, s, &fo, st, err, errlen);
	if (!ret && fsync_dir(path) < 0)
		pr_warn("%s: cannot sync its directory", path);
	if (!ret && chain) {
		chain->links = o->incremental ? chain->links + 1 : 1;
		chain->hash = st->hash;
		snprintf(chain->path, sizeof(chain->path), "%s", path);
		chain->valid = true;
		st->links = chain->links;
	}
	stream_close(s);
	if (ret < 0)
		unlink(tmp);
	st->ns = vmsnap_now_ns() - t0;
	return ret;
}
