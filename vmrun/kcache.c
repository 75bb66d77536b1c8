/* SPDX-License-Identifier: MIT */
/*
 * A bzImage booted through the PVH entry of the vmlinux inside it,
 * unpacked on the host once and kept in the cache: the kernel's own
 * decompressor (single-threaded xz, before anything else in the guest
 * runs) is then skipped on every boot after the first. The cache file is
 * named by a hash of the whole bzImage, so a changed kernel is unpacked
 * again; a cache file that does not parse as a PVH kernel is replaced.
 * The newest KCACHE_KEEP kernels are kept (a hit makes one newest). A
 * kernel whose vmlinux has no PVH note leaves an empty nopvh-* file
 * instead, so that it is not unpacked again only to find that.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kernel/util/log.h"
#include "kernel/x86/loader.h"
#include "vmrun/vmrun.h"

#define KCACHE_KEEP 4
#define NO_PVH                                                      \
	"the vmlinux inside has no PVH entry note (a kernel built " \
	"without CONFIG_PVH)"

int vmrun_cache_dir(char *buf, size_t len)
{
	const char *v = getenv("VMRUN_CACHE"), *x = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	int n;

	if (v && *v)
		n = snprintf(buf, len, "%s", v);
	else if (x && *x)
		n = snprintf(buf, len, "%s/vmrun", x);
	else if (home && *home)
		n = snprintf(buf, len, "%s/.cache/vmrun", home);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* mkdir -p for the cache's own directories (0700). */
static int make_dirs(char *path)
{
	char *p;

	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* True if @data is a kernel that boots through the PVH entry. */
static bool is_pvh(const void *data, size_t size)
{
	struct kernel_image img;
	char why[256];

	return kernel_parse(data, size, &img, why, sizeof(why)) == 0 &&
	       img.kind == KERNEL_ENTRY_PVH;
}

/* Writes @data to @path through a temporary file and rename(). */
static int store(const char *path, const void *data, size_t size)
{
	char tmp[PATH_MAX];
	const char *p = data;
	size_t left = size;
	int fd, ret = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (left) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		p += n;
		left -= (size_t)n;
	}
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

/* Deletes all but the KCACHE_KEEP newest kernels in @dir. */
static void evict(const char *dir)
{
	char pat[PATH_MAX + 32];
	size_t left;
	glob_t g;

	snprintf(pat, sizeof(pat), "%s/vmlinux-*", dir);
	if (glob(pat, 0, NULL, &g))
		return;
	/* An unlinked one no longer stat()s, so it is passed over. */
	for (left = g.gl_pathc; left > KCACHE_KEEP; left--) {
		struct stat st, old;
		size_t i, oldest = SIZE_MAX;

		for (i = 0; i < g.gl_pathc; i++) {
			const char *e = strrchr(g.gl_pathv[i], '.');

			/* Another vmrun's file, still being written. */
			if (e && !strcmp(e, ".tmp"))
				continue;
			if (stat(g.gl_pathv[i], &st) < 0)
				continue;
			if (oldest == SIZE_MAX ||
			    st.st_mtim.tv_sec < old.st_mtim.tv_sec ||
			    (st.st_mtim.tv_sec == old.st_mtim.tv_sec &&
			     st.st_mtim.tv_nsec < old.st_mtim.tv_nsec)) {
				oldest = i;
				old = st;
			}
		}
		if (oldest == SIZE_MAX || unlink(g.gl_pathv[oldest]) < 0)
			break;
	}
	globfree(&g);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

int kernel_unpacked(const char *name, const struct kernel_image *img,
		    void **out, size_t *outlen, char *err, size_t errlen)
{
	struct timespec t0;
	char dir[PATH_MAX], kdir[PATH_MAX + 16], path[PATH_MAX + 64],
		nopvh[PATH_MAX + 64];
	bool cache = false;
	void *data;
	size_t n;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (img->kind != KERNEL_ENTRY_LINUX64)
		return err_printf(err, errlen, -ENOTSUP, "not a bzImage");
	if (vmrun_cache_dir(dir, sizeof(dir)) == 0) {
		unsigned long long h = XXH3_64bits(img->data, img->size);

		snprintf(kdir, sizeof(kdir), "%s/kernels", dir);
		snprintf(path, sizeof(path), "%s/vmlinux-%016llx-%zu", kdir, h,
			 img->size);
		snprintf(nopvh, sizeof(nopvh), "%s/nopvh-%016llx-%zu", kdir, h,
			 img->size);
		cache = true;
	}
	/* Unpacked before and found without a PVH note: not again. */
	if (cache && !access(nopvh, F_OK))
		return err_printf(err, errlen, -ENOTSUP, NO_PVH " (%s)", nopvh);
	if (cache && read_file(path, &data, &n) == 0) {
		if (data && is_pvh(data, n)) {
			utimensat(AT_FDCWD, path, NULL, 0);
			pr_info("%s: booting the vmlinux inside through its PVH entry, unpacked before (%s; %.1f ms)",
				name, path, ms_since(&t0));
			*out = data;
			*outlen = n;
			return 0;
		}
		pr_warn("%s: cached unpacked kernel %s is damaged; unpacking again",
			name, path);
		if (data)
			munmap(data, n);
		unlink(path);
	}
	ret = kernel_unpack(img, &data, &n, err, errlen);
	if (ret < 0)
		return ret;
	if (!is_pvh(data, n)) {
		munmap(data, n);
		if (cache && !make_dirs(kdir))
			store(nopvh, "", 0);
		return err_printf(err, errlen, -ENOTSUP, NO_PVH);
	}
	if (cache) {
		ret = make_dirs(kdir);
		if (!ret)
			ret = store(path, data, n);
		if (!ret)
			evict(kdir);
		else
			pr_info("%s: not caching the unpacked kernel in %s: %s",
				name, path, strerror(-ret));
	}
	pr_info("%s: booting the vmlinux inside through its PVH entry, unpacked (%s, %zu bytes) in %.1f ms",
		name, img->bz.payload_fmt, n, ms_since(&t0));
	*out = data;
	*outlen = n;
	return 0;
}
