/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_VMSNAP_PRIV_H
#define VMM_SNAPSHOT_VMSNAP_PRIV_H

/* Shared by vmsnap.c (saving), vmsnap_sections.c (what a save writes),
 * vmsnap_restore.c and vmsnap_info.c. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "machine.pb-c.h"
#include "vcpu_x86.pb-c.h"
#include "vm_state.pb-c.h"

struct machine;
struct mem_seg;

#define VMSNAP_VMM_VERSION "vmrun 0.1"

/* Size, mtime and identity of the disk file at @spec. */
int vmsnap_disk_info(const char *spec, Vmrun__DiskInfo *d);

/* CPUID bits of a feature word that follow guest state, not the CPU. */
uint32_t vmsnap_feature_ignore(uint32_t leaf, uint32_t subleaf, uint32_t reg);

/* The machine's memory layout as a message (pointing into @a). */
struct layout_acc {
	struct mem_seg *ram;
	Vmrun__MemMap maps[8], *mp[8];
	size_t n;
	int ret;
};

int vmsnap_layout(struct machine *m, struct layout_acc *a, Vmrun__MemLayout *l,
		  Vmrun__MemSegment *seg, Vmrun__MemSegment **segp);

struct image_header;

/*
 * Finds the base that the header @h of the image at @path names: at the
 * path it records, or else under the same file name beside @path (a
 * chain moved as a whole). Checks that its END section records the
 * content hash @h names. Fills @base (its path) or returns -EINVAL with a
 * reason in @err.
 */
int vmsnap_find_base(const char *path, const struct image_header *h, char *base,
		     size_t blen, char *err, size_t errlen);

/* Saving (vmsnap.c), written by vmsnap_sections.c. */
struct image;
struct stream;
struct vmsnap_save_opts;
struct vmsnap_stats;

/* The state of a frozen machine, captured before anything is written. */
struct capture {
	Vmrun__VmState *vms;
	Vmrun__VcpuState **cpus;
	unsigned int nr;
};

/*
 * The machine section, or with @disks_only the DISKS section of a live
 * save (a MachineConfig with only the disks, as they are at the end).
 */
int put_config(struct image *img, struct machine *m, bool disks_only, char *err,
	       size_t errlen);
/* The header (from vCPU 0's CPU features), the machine and the layout. */
int begin_image(struct machine *m, struct stream *s,
		const struct vmsnap_save_opts *o, bool incremental, bool live,
		const struct capture *cs, struct image **out, char *err,
		size_t errlen);
/* The VM, vCPU and device state sections. */
int put_state(struct image *img, struct machine *m, const struct capture *cs,
	      char *err, size_t errlen);
/* Memory: the pages set in @dirty, or (@dirty NULL) every page. */
int put_pages(struct image *img, struct machine *m, const uint64_t *dirty,
	      const struct vmsnap_save_opts *o, char *err, size_t errlen);
/* The END section, then @st's counts and hash. */
int end_image(struct image *img, struct machine *m, struct stream *s,
	      struct vmsnap_stats *st, char *err, size_t errlen);

/* Lazy restore (vmsnap_lazy.c). */
struct image_batch;
struct vmsnap_lazy;

int vmsnap_lazy_create(uint64_t nr_pages, struct vmsnap_lazy **out);

/* image_index()'s batches of link @link (0 the newest), newest first: a
 * page belongs to the first batch that names it. */
int vmsnap_lazy_add_batch(struct vmsnap_lazy *lz, unsigned int link,
			  const struct image_batch *b);

/*
 * Registers @m's RAM (all holes still) and starts the loader over the
 * links' indexed images, filling in the background from the start if
 * @fill, else only once machine_mem_wait() asks. On success the loader owns @lz, the images and
 * their streams, and @m owns the loader (machine_set_loader()): they go
 * with machine_destroy(). On failure nothing changed hands.
 */
int vmsnap_lazy_start(struct vmsnap_lazy *lz, struct machine *m,
		      struct image **imgs, struct stream **streams,
		      unsigned int nr_links, bool fill, vmsnap_lazy_done_t done,
		      void *opaque, char *err, size_t errlen);

/* Frees @lz, stopping its loader first if it was started. */
void vmsnap_lazy_free(struct vmsnap_lazy *lz);

#endif /* VMM_SNAPSHOT_VMSNAP_PRIV_H */
