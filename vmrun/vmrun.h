/* SPDX-License-Identifier: MIT */
#ifndef VMM_VMRUN_VMRUN_H
#define VMM_VMRUN_VMRUN_H

#include <stdio.h>

/* Exit codes of the vmrun command (documented in --help and the man page). */
enum {
	EXIT_POWEROFF = 0,    /* guest powered off */
	EXIT_VMM_ERROR = 1,   /* a VMM-side error */
	EXIT_USAGE = 2,	      /* bad arguments or input */
	EXIT_GUEST_RESET = 3, /* guest asked for a reset */
	EXIT_TRIPLE_FAULT = 4,
	EXIT_KVM_INTERNAL = 5,
};

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

#include "kernel/vm.h"

int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_fuzz(int argc, char **argv);

/* cmd_run.c: argument helpers shared by the commands. */
#include <stddef.h>
#include <stdint.h>
/* 512, 512M, 2G, 1024K (plain numbers are MiB); 0 or -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *out);
/* A decimal in 1..@max; 0 or -EINVAL. */
int parse_uint(const char *s, unsigned long max, unsigned int *out);
/* Maps a regular file read-only (NULL for an empty one); 0 or -errno. */
int read_file(const char *path, void **data, size_t *size);
/*
 * The kernel of @cfg: the file at @path (mapped into *@kdata, *@ksize),
 * or without one the built-in reference guest with @default_cmdline
 * unless a command line was given. Returns 0, or EXIT_USAGE after saying
 * why.
 */
struct machine_config;
#include <stdbool.h>

/*
 * How a bzImage boots (--kernel-entry): AUTO through the PVH entry of
 * the vmlinux inside, unpacked on the host and cached (kcache.c), when
 * it has one, else through its own 64-bit entry; PVH only through the
 * former; BZIMAGE only through the latter, the kernel unpacking itself.
 */
enum kernel_boot { KBOOT_AUTO, KBOOT_PVH, KBOOT_BZIMAGE };
/* Parses auto|pvh|bzimage; 0 or -EINVAL. */
int parse_kernel_boot(const char *s, enum kernel_boot *out);

int config_kernel(struct machine_config *cfg, const char *path,
		  enum kernel_boot boot, const char *default_cmdline,
		  bool cmdline_set, void **kdata, size_t *ksize);

/*
 * kcache.c. The directory vmrun caches in: $VMRUN_CACHE, else
 * $XDG_CACHE_HOME/vmrun, else ~/.cache/vmrun. 0, -ENOENT (no HOME) or
 * -ENAMETOOLONG.
 */
int vmrun_cache_dir(char *buf, size_t len);
/*
 * The vmlinux inside parsed bzImage @img (from file @name), as a PVH
 * kernel: from the cache or unpacked now (and cached when the cache
 * directory is writable). *@out is a mapping of *@outlen bytes for the
 * caller to munmap(). -ENOTSUP (with the reason in @err) when it cannot
 * boot that way: a payload format vmrun does not unpack, or no PVH note;
 * -EINVAL for a corrupt payload.
 */
struct kernel_image;
int kernel_unpacked(const char *name, const struct kernel_image *img,
		    void **out, size_t *outlen, char *err, size_t errlen);

struct machine;

/*
 * Serves a control socket at @ctl_path (if not NULL), runs @m until it
 * stops, destroys it and returns vmrun's exit status.
 */
struct vmsnap_chain;
int vmrun_serve(struct machine *m, const char *ctl_path,
		const struct vmsnap_chain *chain);

/* Prints @s as a JSON string (quoted, escaped) to @f. */
void json_str(FILE *f, const char *s);

/* Prints "vmrun: <msg>" to stderr. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The built-in reference guest, if this build has one. */
extern const unsigned char *const builtin_guest;
extern const size_t *const builtin_guest_size;

#endif /* VMM_VMRUN_VMRUN_H */
