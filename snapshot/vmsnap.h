/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_VMSNAP_H
#define VMM_SNAPSHOT_VMSNAP_H

/*
 * A whole machine (kernel/machine.h) to and from an image
 * (snapshot/image.h): what it was built from, its memory layout, the VM,
 * vCPU and device state, and its memory. The section types are listed in
 * docs/snapshot-format.md.
 *
 * Saving needs the machine frozen (machine_freeze()); vmsnap_save_file()
 * freezes it itself and always thaws it, whatever happens, and replaces
 * the file at @path only once the new image is complete and durable.
 *
 * Restoring reads the image in one pass: the build and state sections
 * first (checked against this host: CPU features, layout, disks), then
 * the machine is built and the pages go straight into its RAM, each
 * section only after its checksum held; VM, device and vCPU state are
 * loaded at the end. A bad image leaves nothing behind: no machine, and
 * no vCPU ever ran.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/machine.h"
#include "kernel/util/compiler.h"
#include "snapshot/image.h"

struct stream;

/* Section type numbers within the image (docs/snapshot-format.md). */
enum {
	VMSNAP_STATE_MACHINE = 1, /* vmrun.MachineConfig */
	VMSNAP_STATE_VM = 2,	  /* vmrun.VmState */
	VMSNAP_STATE_VCPU = 3,	  /* vmrun.VcpuSection */
	VMSNAP_STATE_DEVICE = 4,  /* vmrun.DeviceState */
	/* A live save's disks as they are at its end: a vmrun.MachineConfig
	 * holding only the disks. */
	VMSNAP_STATE_DISKS = 5,
	VMSNAP_LAYOUT_MEM = 1, /* vmrun.MemLayout */
};

/* Called between slices of memory: @done of @total pages written/read. */
typedef void (*vmsnap_progress_t)(void *opaque, uint64_t done, uint64_t total);

/* A live save's running round, as its round callback hears of it. */
struct vmsnap_round {
	unsigned int round; /* 0: all of memory */
	/* Written: pages as data (zero pages not counted), stream bytes,
	 * time (a migration's drain included). */
	uint64_t pages, bytes, ns;
	uint64_t next;	      /* pages dirtied meanwhile: the next round */
	uint64_t final_pages; /* what the frozen end may hold (downtime) */
	bool shrinking;	      /* @next is at least an eighth below the last */
};

/* What comes after a running round: the save's own choice (the frozen
 * end once the rest fits or stops shrinking), another running round, or
 * the frozen end now. */
enum vmsnap_round_next {
	VMSNAP_ROUND_AUTO,
	VMSNAP_ROUND_MORE,
	VMSNAP_ROUND_FINAL,
};

/* Returns an enum vmsnap_round_next, or -errno (with @err) to fail the
 * save. */
typedef int (*vmsnap_round_t)(void *opaque, const struct vmsnap_round *r,
			      char *err, size_t errlen);

struct vmsnap_stats {
	uint64_t bytes;	     /* image bytes written or read */
	uint64_t pages;	     /* guest pages carried, zero pages included */
	uint64_t zero_pages; /* of which zero (no data) */
	uint64_t mem_bytes;  /* guest RAM */
	uint64_t ns;	     /* wall time of the whole operation */
	uint64_t frozen_ns;  /* of which the vCPUs were frozen (saving) */
	uint64_t hash;	     /* the image's content hash */
	unsigned int links;  /* images read (restore) or in the chain (save) */
	unsigned int
		rounds; /* live save: rounds written with the vCPUs running */
	/* Saving: data batches written, and of them raw ones. */
	uint64_t batches, raw_batches;
};

/* ImageHeader.flags: the image was saved live (state after the pages,
 * pages rewritten, disks as of the end in a DISKS section). */
#define VMSNAP_FLAG_LIVE 0x1u
/* A live save's rounds: at most this many while the vCPUs run; the rest
 * goes frozen once a round is at most VMSNAP_LIVE_FINAL_PAGES pages or
 * stops shrinking by an eighth. */
#define VMSNAP_LIVE_MAX_ROUNDS 8
#define VMSNAP_LIVE_FINAL_PAGES 2048u

/* Most links in a chain: a full image and its incremental images. */
#define VMSNAP_MAX_CHAIN 64

/*
 * The last image saved of a machine: the base of its next incremental
 * save. vmsnap_save_file() keeps it up to date.
 */
struct vmsnap_chain {
	bool valid;
	uint64_t hash;	    /* its content hash */
	unsigned int links; /* 1 for a full image, +1 per incremental one */
	char path[4096];
};

/* Codec worker threads when an operation asks for the default (0): one
 * per CPU this process may use, at most this many. */
#define VMSNAP_DEFAULT_THREADS 4

/* The workers an operation asking for @threads gets (0: the default). */
unsigned int vmsnap_threads(unsigned int threads);

struct vmsnap_save_opts {
	enum image_codec codec;
	bool aligned; /* page-aligned uncompressed layout (codec none) */
	/* Threads compressing batches while pages are scanned and written
	 * (0: vmsnap_threads()'s default; none for codec none). */
	unsigned int threads;
	/* A batch goes raw while every thread is busy (image_header's
	 * adaptive): the codec where the CPU has time, raw where the link
	 * has room. */
	bool adaptive;
	/*
	 * With @chain, every save begins a dirty epoch (the first one starts
	 * dirty tracking), and @incremental writes only the pages written
	 * since the last save, over the base @chain names.
	 */
	struct vmsnap_chain *chain;
	bool incremental;
	/*
	 * Live (needs @chain): memory is written while the vCPUs run, in
	 * rounds, and the vCPUs are frozen only for the last pages, the
	 * state and the fsync; the image holds the machine as it was at
	 * the end of the save, not at its start.
	 */
	bool live;
	unsigned int live_rounds; /* at least this many running rounds */
	/*
	 * Live: the last round, frozen, should take about this long at the
	 * rate rounds were written so far (0: stop at
	 * VMSNAP_LIVE_FINAL_PAGES); at most @live_max_rounds running rounds
	 * (0: VMSNAP_LIVE_MAX_ROUNDS).
	 */
	uint64_t downtime_ns;
	unsigned int live_max_rounds;
	/*
	 * Live: once the header, the machine section and the memory layout
	 * are written, before the first page (may be NULL): a migration
	 * waits here for its destination to say it can build that machine,
	 * so that a refusal comes before any page moves. Non-zero fails the
	 * save.
	 */
	int (*begun)(void *opaque, struct stream *s, char *err, size_t errlen);
	/* Live: after each round written with the vCPUs running (may be
	 * NULL). */
	vmsnap_round_t round;
	/*
	 * Live: after each running round is written, before it is timed
	 * (may be NULL): a migration waits here until its destination has
	 * caught up, so that the rate measured is the whole pipeline's and
	 * no backlog is left for the frozen end. Non-zero fails the save.
	 */
	int (*drain)(void *opaque, struct stream *s, char *err, size_t errlen);
	/*
	 * Called once the image is complete and synced, with the machine
	 * still frozen (may be NULL): non-zero fails the save, which then
	 * thaws the machine and gives its dirty pages back. A migration
	 * waits here for its destination to accept the machine.
	 */
	int (*commit)(void *opaque, char *err, size_t errlen);
	void *commit_opaque;
	vmsnap_progress_t progress;
	void *opaque;
};

/*
 * Writes the frozen machine @m as an image to @s: a complete one, or with
 * @dirty (one bit per RAM page) an incremental one holding only those
 * pages, over the base @o->chain names.
 */
int vmsnap_save(struct machine *m, struct stream *s,
		const struct vmsnap_save_opts *o, const uint64_t *dirty,
		struct vmsnap_stats *st, char *err, size_t errlen) __must_check;

/*
 * Writes @m onto the open stream @s as one whole image, live or frozen as
 * @o says (no chain: @o->chain and @o->incremental must be unset), and
 * asks @o->commit before the machine thaws. On failure @m runs on and
 * the dirty pages the save collected are given back.
 */
int vmsnap_save_stream(struct machine *m, struct stream *s,
		       const struct vmsnap_save_opts *o,
		       struct vmsnap_stats *st, char *err,
		       size_t errlen) __must_check;

/*
 * Freezes @m, writes the image to a temporary file beside @path, fsyncs
 * it, renames it over @path, fsyncs the directory and thaws @m. On any
 * failure the temporary file is removed, an older file at @path is left
 * as it was, @m runs on, and @err says why.
 */
int vmsnap_save_file(struct machine *m, const char *path,
		     const struct vmsnap_save_opts *o, struct vmsnap_stats *st,
		     char *err, size_t errlen) __must_check;

/* How a lazy restore's memory loading went, once it is over. */
struct vmsnap_lazy_stats {
	uint64_t ns;	 /* from the start of the vCPUs' run to complete */
	uint64_t faults; /* first touches served (a batch or a zero page) */
	uint64_t fault_pages; /* pages installed for them */
	uint64_t fill_pages;  /* pages installed by the background fill */
	uint64_t batches;     /* batches read */
	uint64_t existed;     /* pages found installed already (should be 0) */
	bool error;
};

/* Called from the loader thread when the memory is complete or cannot
 * be (@err then says why and the VM has been stopped). */
typedef void (*vmsnap_lazy_done_t)(void *opaque,
				   const struct vmsnap_lazy_stats *st,
				   const char *err);

struct vmsnap_restore_opts {
	const char *console; /* NULL: "stdio" */
	/* Threads decompressing and placing batches while the stream is
	 * read (0: vmsnap_threads()'s default). */
	unsigned int threads;
	const char *disks[MACHINE_MAX_DISKS]; /* NULL: the saved path */
	const char *nets[MACHINE_MAX_NETS];   /* NULL: the saved spec */
	bool disk_changed_ok;
	/* Start dirty tracking, so the restored image can be the base of an
	 * incremental save. */
	bool track_dirty;
	/*
	 * Lazy: return as soon as the state is loaded, RAM still empty; it
	 * is served on first touch and filled in the background (see
	 * vmsnap_lazy.c). Batches' data checksums are then checked when
	 * they are read, not before the guest runs. @lazy_done (may be
	 * NULL) hears when the memory is complete.
	 */
	bool lazy;
	/* Lazy, and no background fill until a save needs all of memory:
	 * only the pages the guest touches are read. */
	bool lazy_demand;
	vmsnap_lazy_done_t lazy_done;
	/* The machine this side was started for: memory in bytes and vCPUs
	 * (0: whatever the image says); an image of another is refused. */
	uint64_t want_mem;
	unsigned int want_cpus;
	/* After each section of pages is in memory: the stream's bytes read
	 * so far (a migration's destination tells its source how far it
	 * is). May be NULL. */
	void (*consumed)(void *opaque, uint64_t bytes);
	void *consumed_opaque;
	/* Once the machine is built and checked against this host, before
	 * any page is read (not lazy; may be NULL): a migration's
	 * destination tells its source to send the pages. */
	void (*built)(void *opaque);
	vmsnap_progress_t progress;
	void *opaque;
};

/*
 * Builds a machine from the image at @path (following its chain of base
 * images, newest first: a page comes from the newest link that holds it)
 * and loads it; the caller runs
 * it with machine_run(). Returns -EINVAL, -EBADMSG or -EPROTONOSUPPORT
 * for an image this host must refuse (bad, corrupt, from an unknown
 * version, a CPU feature missing, a disk changed), other -errno for
 * failures of this host, each with a one-line reason in @err.
 */
int vmsnap_restore_file(const char *path, const struct vmsnap_restore_opts *o,
			struct machine **out, struct vmsnap_stats *st,
			char *err, size_t errlen) __must_check;

/*
 * The same from the open stream @s (a migration's socket), read once in
 * order, which it takes over (and closes; not the fd under it): a whole
 * machine, never an incremental image, never lazily. @name is for
 * messages.
 */
int vmsnap_restore_stream(struct stream *s, const char *name,
			  const struct vmsnap_restore_opts *o,
			  struct machine **out, struct vmsnap_stats *st,
			  char *err, size_t errlen) __must_check;

/* What an image holds (vmrun image info). */
struct vmsnap_info {
	enum image_codec codec;
	bool aligned;
	bool live; /* saved live: pages may repeat, the last copy wins */
	bool has_base;
	uint64_t base_hash, content_hash;
	char base_path[4096]; /* where the base was found */
	unsigned int links;   /* in the chain, this image included */
	uint64_t chain_pages; /* pages in every link (info on the chain) */
	char vcpu_model[96];
	char vmm_version[32];
	unsigned int nr_vcpus;
	uint64_t mem_bytes;
	unsigned int nr_devs;
	char devs[32][16]; /* device models, in order */
	unsigned int nr_disks, nr_nets;
	uint64_t pages, zero_pages, bytes;
};

/*
 * Reads the whole image at @path and checks it without running anything:
 * every checksum, every batch decompressed, every state message decoded,
 * pages within the layout; then the same for each base of its chain,
 * which must be there and have the content hash the next link names.
 * Fills @inf (with the chain's length; the rest is @path's own). Errors as vmsnap_restore_file().
 */
int vmsnap_info(const char *path, struct vmsnap_info *inf, char *err,
		size_t errlen) __must_check;

/*
 * Reads the image at @path whole (every checksum checked) and calls @fn
 * with each state and layout section's payload in order, @index counting
 * them from 0; @fn returning non-zero stops the walk with that value.
 * For taking an image apart with protoc (vmrun image dump).
 */
typedef int (*vmsnap_section_fn)(void *opaque, unsigned int index, bool layout,
				 uint32_t type, const void *data, size_t len);
int vmsnap_sections(const char *path, vmsnap_section_fn fn, void *opaque,
		    char *err, size_t errlen) __must_check;

/* Monotonic nanoseconds. */
uint64_t vmsnap_now_ns(void);

#endif /* VMM_SNAPSHOT_VMSNAP_H */
