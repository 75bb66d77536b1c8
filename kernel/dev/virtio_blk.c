/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include "kernel/dev/dev.h"
#include "kernel/dev/virtio_mmio.h"
#include "kernel/util/log.h"

/*
 * virtio-blk over a raw image. Requests are served synchronously with
 * pread()/pwrite() in the thread that kicked the queue (a vCPU), under
 * the transport lock; there is no I/O thread yet.
 *
 * Request layout (virtio 1.x 5.2.6): a 16-byte header (type, reserved,
 * sector) in the readable part, then data (readable for T_OUT, writable
 * for T_IN and T_GET_ID), then one writable status byte, which is the
 * last byte of the writable part. Segment boundaries may fall anywhere.
 */

#define SECTOR_SHIFT 9
#define SECTOR_SIZE (1U << SECTOR_SHIFT)
#define BLK_QUEUE_MAX 256
#define BLK_HDR_LEN 16
/* Data segments per request: the chain minus header and status. */
#define BLK_SEG_MAX (VIRTQ_MAX_SEGS - 2)
#define BLK_CONFIG_LEN 24

struct virtio_blk {
	struct virtio_mmio t;		/* first: holds struct dev */
	int fd;				/* [I] */
	bool ro;			/* [I] */
	uint64_t capacity;		/* [I] sectors */
	uint8_t config[BLK_CONFIG_LEN]; /* [I] little endian */
	char id[VIRTIO_BLK_ID_BYTES];	/* [I] T_GET_ID answer, NUL-padded */
	struct virtq_chain chain;	/* [t] scratch */
};

static struct virtio_blk *to_blk(struct virtio_mmio *t)
{
	return container_of(t, struct virtio_blk, t);
}

static void blk_config_read(struct virtio_mmio *t, uint32_t off, void *data,
			    uint32_t len)
{
	memcpy(data, to_blk(t)->config + off, len);
}

/* Reads @len bytes of the image at @pos, zero-filling past its end. */
static int pread_full(int fd, uint8_t *p, size_t len, uint64_t pos)
{
	while (len) {
		ssize_t r = pread(fd, p, len, pos);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r) {
			memset(p, 0, len);
			return 0;
		}
		p += r;
		pos += r;
		len -= r;
	}
	return 0;
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, uint64_t pos)
{
	while (len) {
		ssize_t r = pwrite(fd, p, len, pos);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EIO;
		p += r;
		pos += r;
		len -= r;
	}
	return 0;
}

/*
 * T_IN: reads @len bytes at @pos straight into the first @len bytes of
 * the writable part, segment by segment, through the DMA write path.
 * Returns 0, -EFAULT (guest memory vanished: the queue is broken) or the
 * pread error.
 */
static int blk_read(struct virtio_blk *b, struct virtq *vq,
		    const struct virtq_chain *c, uint64_t pos, uint32_t len)
{
	unsigned int i;
	int ret;

	for (i = c->nr_ro; i < c->nr && len; i++) {
		uint32_t n = MIN(c->seg[i].len, len);
		uint8_t *p = virtq_dma_begin(vq, c->seg[i].gpa, n);

		if (!p)
			return virtq_fail(vq, -EFAULT, "blk buffer vanished");
		ret = pread_full(b->fd, p, n, pos);
		virtq_dma_done(vq, c->seg[i].gpa, n);
		if (ret)
			return ret;
		pos += n;
		len -= n;
	}
	return 0;
}

/* T_OUT: writes the readable part after the header to @pos. */
static int blk_write(struct virtio_blk *b, struct virtq *vq,
		     const struct virtq_chain *c, uint64_t pos)
{
	uint32_t skip = BLK_HDR_LEN;
	unsigned int i;
	int ret;

	for (i = 0; i < c->nr_ro; i++) {
		uint32_t n = c->seg[i].len;
		const uint8_t *p;

		if (skip >= n) {
			skip -= n;
			continue;
		}
		n -= skip;
		p = virtq_map_ro(vq, c->seg[i].gpa + skip, n);
		if (!p)
			return virtq_fail(vq, -EFAULT, "blk buffer vanished");
		ret = pwrite_full(b->fd, p, n, pos);
		if (ret)
			return ret;
		pos += n;
		skip = 0;
	}
	return 0;
}

static bool in_range(const struct virtio_blk *b, uint64_t sector,
		     uint32_t bytes)
{
	if (bytes % SECTOR_SIZE)
		return false;
	return sector <= b->capacity &&
	       (bytes >> SECTOR_SHIFT) <= b->capacity - sector;
}

/*
 * Serves one request and sets *@written to the bytes written to the
 * writable part (data plus status byte). Returns 0, or -errno if the
 * queue broke.
 */
static int blk_request(struct virtio_blk *b, struct virtq *vq,
		       const struct virtq_chain *c, uint32_t *written)
{
	struct virtio_blk_outhdr hdr;
	uint32_t data_wr, data_ro, n;
	uint8_t status = VIRTIO_BLK_S_OK;
	uint64_t sector;
	int ret;

	*written = 1;
	if (c->ro_len < BLK_HDR_LEN || c->wr_len < 1)
		return virtq_fail(vq, -EINVAL,
				  "blk request without header or status");
	ret = virtq_chain_read(vq, c, 0, &hdr, sizeof(hdr));
	if (ret)
		return ret;
	sector = le64toh(hdr.sector);
	data_wr = c->wr_len - 1;
	data_ro = c->ro_len - BLK_HDR_LEN;

	switch (le32toh(hdr.type)) {
	case VIRTIO_BLK_T_IN:
		if (!in_range(b, sector, data_wr)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		ret = blk_read(b, vq, c, sector << SECTOR_SHIFT, data_wr);
		if (ret && !virtq_usable(vq))
			return ret;
		if (ret)
			status = VIRTIO_BLK_S_IOERR;
		*written += data_wr;
		break;
	case VIRTIO_BLK_T_OUT:
		if (b->ro || !in_range(b, sector, data_ro)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		ret = blk_write(b, vq, c, sector << SECTOR_SHIFT);
		if (ret && !virtq_usable(vq))
			return ret;
		if (ret)
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (!b->ro && fdatasync(b->fd))
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_GET_ID:
		n = MIN(data_wr, (uint32_t)VIRTIO_BLK_ID_BYTES);
		ret = virtq_chain_write(vq, c, 0, b->id, n);
		if (ret)
			return ret;
		*written += n;
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (status != VIRTIO_BLK_S_OK)
		pr_debug("virtio-blk: request type %u sector %llu: status %u",
			 le32toh(hdr.type), (unsigned long long)sector, status);
	return virtq_chain_write(vq, c, c->wr_len - 1, &status, 1);
}

static void blk_notify(struct virtio_mmio *t, unsigned int q)
{
	struct virtio_blk *b = to_blk(t);
	struct virtq *vq = &t->vq[q];
	uint32_t written;
	int ret;

	do {
		while (!(ret = virtq_pop(vq, &b->chain))) {
			if (blk_request(b, vq, &b->chain, &written))
				return;
			if (virtq_push(vq, b->chain.head, written))
				return;
		}
		if (ret != -EAGAIN)
			return;
	} while (virtq_rearm(vq));
	virtio_mmio_signal(t, vq);
}

static const struct virtio_mmio_ops blk_mmio_ops = {
	.device_id = VIRTIO_ID_BLOCK,
	.features = (1ULL << VIRTIO_BLK_F_SEG_MAX) |
		    (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		    (1ULL << VIRTIO_BLK_F_FLUSH),
	.nr_queues = 1,
	.queue_max = BLK_QUEUE_MAX,
	.config_len = BLK_CONFIG_LEN,
	.config_read = blk_config_read,
	.notify = blk_notify,
};

static const struct virtio_mmio_ops blk_mmio_ops_ro = {
	.device_id = VIRTIO_ID_BLOCK,
	.features = (1ULL << VIRTIO_BLK_F_SEG_MAX) |
		    (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		    (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_RO),
	.nr_queues = 1,
	.queue_max = BLK_QUEUE_MAX,
	.config_len = BLK_CONFIG_LEN,
	.config_read = blk_config_read,
	.notify = blk_notify,
};

static void put_le(uint8_t *p, uint64_t v, unsigned int bytes)
{
	unsigned int i;

	for (i = 0; i < bytes; i++)
		p[i] = v >> (8 * i);
}

static int blk_open(struct virtio_blk *b, const char *path)
{
	const char *base = strrchr(path, '/');
	off_t size;

	b->fd = open(path, O_RDWR | O_CLOEXEC);
	if (b->fd < 0 && (errno == EACCES || errno == EROFS)) {
		b->fd = open(path, O_RDONLY | O_CLOEXEC);
		b->ro = true;
	}
	if (b->fd < 0) {
		pr_err("virtio-blk: %s: %s", path, strerror(errno));
		return -errno;
	}
	size = lseek(b->fd, 0, SEEK_END);
	if (size < 0) {
		pr_err("virtio-blk: %s: size: %s", path, strerror(errno));
		close(b->fd);
		return -EINVAL;
	}
	b->capacity = (uint64_t)size >> SECTOR_SHIFT;
	put_le(b->config + 0, b->capacity, 8);	/* capacity */
	put_le(b->config + 12, BLK_SEG_MAX, 4); /* seg_max */
	put_le(b->config + 20, SECTOR_SIZE, 4); /* blk_size */
	base = base ? base + 1 : path;
	memcpy(b->id, base, strnlen(base, sizeof(b->id)));
	return 0;
}

int virtio_blk_create_mmio(const struct virtio_mmio_conf *mc, const char *path,
			   struct dev **out)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return -ENOMEM;
	ret = blk_open(b, path);
	if (ret)
		goto err_free;
	ret = virtio_mmio_init(&b->t, mc,
			       b->ro ? &blk_mmio_ops_ro : &blk_mmio_ops);
	if (ret)
		goto err_close;
	b->t.dev.ops = &virtio_blk_dev_ops;
	b->t.dev.vm = mc->vm;
	*out = &b->t.dev;
	return 0;

err_close:
	close(b->fd);
err_free:
	free(b);
	return ret;
}

int virtio_blk_create(struct vm *vm, uint64_t mmio_base, uint32_t gsi,
		      const char *path, struct dev **out)
{
	struct virtio_mmio_conf mc = {
		.vm = vm,
		.base = mmio_base,
		.gsi = gsi,
	};

	return virtio_blk_create_mmio(&mc, path, out);
}

static int blk_init(struct vm *vm, const char *conf, struct dev **out)
{
	struct virtio_mmio_conf mc;
	char path[PATH_MAX];
	int ret;

	ret = virtio_conf_mmio(vm, conf, &mc);
	if (ret)
		return ret;
	if (virtio_conf_str(conf, "path", path, sizeof(path)) || !path[0]) {
		pr_err("virtio-blk: conf '%s' needs path=IMAGE", conf);
		return -EINVAL;
	}
	return virtio_blk_create_mmio(&mc, path, out);
}

static void blk_fini(struct dev *dev)
{
	struct virtio_blk *b = to_blk(virtio_mmio_from_dev(dev));

	virtio_mmio_fini(&b->t);
	close(b->fd);
	free(b);
}

const struct dev_ops virtio_blk_dev_ops = {
	.name = "virtio-blk",
	.state_type = "vmrun.VirtioMmioState",
	.init = blk_init,
	.fini = blk_fini,
	.reset = virtio_mmio_dev_reset,
	.pause = virtio_mmio_dev_pause,
	.resume = virtio_mmio_dev_resume,
	.save = virtio_mmio_dev_save,
	.load = virtio_mmio_dev_load,
};
