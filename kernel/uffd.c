/* SPDX-License-Identifier: MIT */
#include "kernel/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UFFD_PAGE 4096u

int uffd_open(int *out)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd, ret;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
		close(fd);
		return -EOPNOTSUPP;
	}
	*out = fd;
	return 0;
}

int uffd_register(int fd, void *addr, size_t len)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &r) < 0)
		return -errno;
	if (!(r.ioctls & (1ULL << _UFFDIO_COPY)))
		return -EOPNOTSUPP;
	return 0;
}

int uffd_unregister(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(fd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

/*
 * One of UFFDIO_COPY and UFFDIO_ZEROPAGE over [dst, dst + len): the
 * kernel stops at a page that exists (-EEXIST) or when interrupted
 * (-EAGAIN), reporting what it did; go on past an existing page.
 */
static int uffd_fill(int fd, uintptr_t dst, const uint8_t *src, size_t len,
		     size_t *existed)
{
	size_t done = 0;

	while (done < len) {
		long r, n;

		if (src) {
			struct uffdio_copy c = { .dst = dst + done,
						 .src = (uintptr_t)(src + done),
						 .len = len - done };

			r = ioctl(fd, UFFDIO_COPY, &c);
			n = c.copy;
		} else {
			struct uffdio_zeropage z = {
				.range = { .start = dst + done,
					   .len = len - done },
			};

			r = ioctl(fd, UFFDIO_ZEROPAGE, &z);
			n = z.zeropage;
		}
		if (r == 0) {
			done = len;
			break;
		}
		if (n > 0)
			done += (size_t)n;
		if (errno == EEXIST || n == -EEXIST) {
			if (existed)
				(*existed)++;
			done += UFFD_PAGE;
		} else if (errno != EAGAIN && n != -EAGAIN) {
			return -errno;
		}
	}
	return 0;
}

int uffd_copy(int fd, void *dst, const void *src, size_t len, size_t *existed)
{
	return uffd_fill(fd, (uintptr_t)dst, src, len, existed);
}

int uffd_zero(int fd, void *dst, size_t len, size_t *existed)
{
	return uffd_fill(fd, (uintptr_t)dst, NULL, len, existed);
}

int uffd_next_fault(int fd, uint64_t *addr)
{
	struct uffd_msg msg;

	for (;;) {
		ssize_t n = read(fd, &msg, sizeof(msg));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n != sizeof(msg))
			return -EIO;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue; /* no other events were asked for */
		*addr = msg.arg.pagefault.address;
		return 1;
	}
}
