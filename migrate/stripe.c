/* SPDX-License-Identifier: MIT */
/*
 * One stream over several connections (migrate_priv.h): the bytes are cut
 * in chunks, chunk k goes on connection k mod n behind a header (u32
 * length, u32 k), and a thread per connection sends or receives them, so
 * that the copies into and out of the kernel, and each connection's own
 * limits (its congestion window, the one receive queue and core a flow is
 * hashed to), are spread over the connections. The reader puts the chunks
 * back in order; a chunk out of order, too long or empty is a broken
 * stream. The image on top is the same byte for byte as over one
 * connection.
 */
#include "migrate/migrate_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "kernel/util/compiler.h"
#include "snapshot/stream.h"

/* Chunks a connection holds at most: queued to send, or received and not
 * yet read. */
#define STRIPE_QUEUE 4

struct chunk {
	struct chunk *next; /* the free list */
	uint32_t len, pos;
	uint8_t data[STRIPE_CHUNK];
};

struct stripe;

struct stripe_conn {
	struct stripe *sp;
	unsigned int index;
	int fd;
	pthread_t thread;
	bool started;
	struct chunk *q[STRIPE_QUEUE]; /* oldest first from @head */
	unsigned int head, count;
	bool busy; /* writer: q[head] is being sent */
	bool eof;  /* reader: the peer ended the connection */
	int err;   /* this connection's failure */
};

struct stripe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	unsigned int n;
	unsigned int timeout_ms;
	struct stripe_conn *c;
	uint64_t seq;	    /* the chunk being filled (writer) or read */
	struct chunk *cur;  /* it */
	struct chunk *free; /* spare chunks */
	int err;	    /* writer: the first connection's failure */
};

static struct chunk *chunk_get(struct stripe *sp)
{
	struct chunk *c;

	pthread_mutex_lock(&sp->lock);
	c = sp->free;
	if (c)
		sp->free = c->next;
	pthread_mutex_unlock(&sp->lock);
	if (!c)
		c = malloc(sizeof(*c));
	if (c)
		c->len = c->pos = 0;
	return c;
}

/* Under the lock. */
static void chunk_put(struct stripe *sp, struct chunk *c)
{
	c->next = sp->free;
	sp->free = c;
}

/* The header and the data of @c, all of it, or -errno. */
static int send_chunk(int fd, struct chunk *c, uint32_t seq)
{
	uint8_t hdr[STRIPE_HEADER];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { c->data, c->len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	size_t left = sizeof(hdr) + c->len;

	put32(hdr, c->len);
	put32(hdr + 4, seq);
	while (left) {
		ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		left -= (size_t)k;
		while (mh.msg_iovlen && (size_t)k >= mh.msg_iov->iov_len) {
			k -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base =
				(uint8_t *)mh.msg_iov->iov_base + k;
			mh.msg_iov->iov_len -= (size_t)k;
		}
	}
	return 0;
}

static void *sender(void *arg)
{
	struct stripe_conn *c = arg;
	struct stripe *sp = c->sp;
	int ret;

	pthread_mutex_lock(&sp->lock);
	for (;;) {
		while (!c->count && !sp->stopping)
			pthread_cond_wait(&sp->cond, &sp->lock);
		if (!c->count || sp->err)
			break;
		c->busy = true;
		pthread_mutex_unlock(&sp->lock);
		/* Chunk k of the stream is the (k / n)th of this connection. */
		ret = send_chunk(c->fd, c->q[c->head], c->q[c->head]->pos);
		pthread_mutex_lock(&sp->lock);
		c->busy = false;
		chunk_put(sp, c->q[c->head]);
		c->head = (c->head + 1) % STRIPE_QUEUE;
		c->count--;
		if (ret < 0 && !sp->err)
			sp->err = ret;
		pthread_cond_broadcast(&sp->cond);
		if (ret < 0)
			break;
	}
	pthread_mutex_unlock(&sp->lock);
	return NULL;
}

/* Queues the chunk being filled on its connection, waiting for room. */
static int submit(struct stripe *sp)
{
	struct stripe_conn *c = &sp->c[sp->seq % sp->n];
	struct chunk *ch = sp->cur;
	int ret;

	sp->cur = NULL;
	/* The sender's header carries the chunk's number: kept in @pos. */
	ch->pos = (uint32_t)sp->seq;
	pthread_mutex_lock(&sp->lock);
	while (c->count == STRIPE_QUEUE && !sp->err)
		pthread_cond_wait(&sp->cond, &sp->lock);
	ret = sp->err;
	if (ret < 0) {
		chunk_put(sp, ch);
	} else {
		c->q[(c->head + c->count) % STRIPE_QUEUE] = ch;
		c->count++;
		sp->seq++;
		pthread_cond_broadcast(&sp->cond);
	}
	pthread_mutex_unlock(&sp->lock);
	return ret;
}

static int stripe_write(void *opaque, const void *buf, size_t len)
{
	struct stripe *sp = opaque;
	const uint8_t *p = buf;
	int ret;

	while (len) {
		size_t k;

		if (!sp->cur && !(sp->cur = chunk_get(sp)))
			return -ENOMEM;
		k = MIN(len, STRIPE_CHUNK - sp->cur->len);
		memcpy(sp->cur->data + sp->cur->len, p, k);
		sp->cur->len += (uint32_t)k;
		p += k;
		len -= k;
		if (sp->cur->len == STRIPE_CHUNK) {
			ret = submit(sp);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* Everything written is out on the connections (in the kernel's hands). */
static int stripe_flush(void *opaque)
{
	struct stripe *sp = opaque;
	unsigned int i;
	int ret = 0;

	if (sp->cur && sp->cur->len)
		ret = submit(sp);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&sp->lock);
	for (i = 0; i < sp->n && !sp->err;) {
		if (sp->c[i].count) {
			pthread_cond_wait(&sp->cond, &sp->lock);
			continue;
		}
		i++;
	}
	ret = sp->err;
	pthread_mutex_unlock(&sp->lock);
	return ret;
}

/*
 * Exactly @len bytes from @fd; 0, -ENODATA at a clean end before the
 * first byte, -EPIPE at an end partway, -errno. A receive time-out waits
 * on (the reader has its own deadline) unless the stripe is closing.
 */
static int recv_full(struct stripe *sp, int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t k = recv(fd, p + done, len - done, 0);

		if (k < 0 && (errno == EINTR || errno == EAGAIN) &&
		    !__atomic_load_n(&sp->stopping, __ATOMIC_RELAXED))
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return done ? -EPIPE : -ENODATA;
		done += (size_t)k;
	}
	return 0;
}

static void *receiver(void *arg)
{
	struct stripe_conn *c = arg;
	struct stripe *sp = c->sp;
	uint64_t want = c->index; /* the next chunk's number */
	uint8_t hdr[STRIPE_HEADER];
	struct chunk *ch = NULL;
	int ret;

	for (;;) {
		pthread_mutex_lock(&sp->lock);
		while (c->count == STRIPE_QUEUE && !sp->stopping)
			pthread_cond_wait(&sp->cond, &sp->lock);
		pthread_mutex_unlock(&sp->lock);
		if (__atomic_load_n(&sp->stopping, __ATOMIC_RELAXED))
			break;
		ret = recv_full(sp, c->fd, hdr, sizeof(hdr));
		if (!ret && (!get32(hdr) || get32(hdr) > STRIPE_CHUNK ||
			     get32(hdr + 4) != (uint32_t)want))
			ret = -EBADMSG;
		if (!ret && !(ch = chunk_get(sp)))
			ret = -ENOMEM;
		if (!ret) {
			ch->len = get32(hdr);
			ret = recv_full(sp, c->fd, ch->data, ch->len);
			if (ret == -ENODATA)
				ret = -EPIPE;
		}
		pthread_mutex_lock(&sp->lock);
		if (ret == -ENODATA)
			c->eof = true;
		else if (ret < 0)
			c->err = ret;
		else
			c->q[(c->head + c->count++) % STRIPE_QUEUE] = ch;
		if (ret < 0 && ch)
			chunk_put(sp, ch);
		ch = NULL;
		pthread_cond_broadcast(&sp->cond);
		pthread_mutex_unlock(&sp->lock);
		if (ret < 0)
			break;
		want += sp->n;
	}
	return NULL;
}

static long stripe_read(void *opaque, void *buf, size_t len)
{
	struct stripe *sp = opaque;
	struct stripe_conn *c;
	struct timespec until;
	long ret = 0;
	size_t k;

	if (sp->cur && sp->cur->pos == sp->cur->len) {
		pthread_mutex_lock(&sp->lock);
		chunk_put(sp, sp->cur);
		pthread_mutex_unlock(&sp->lock);
		sp->cur = NULL;
	}
	if (!sp->cur) {
		c = &sp->c[sp->seq % sp->n];
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += sp->timeout_ms / 1000;
		until.tv_nsec += (long)(sp->timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&sp->lock);
		while (!c->count && !c->eof && !c->err && !ret)
			if (pthread_cond_timedwait(&sp->cond, &sp->lock,
						   &until) == ETIMEDOUT)
				ret = -ETIMEDOUT;
		if (c->count) {
			sp->cur = c->q[c->head];
			c->head = (c->head + 1) % STRIPE_QUEUE;
			c->count--;
			sp->seq++;
			ret = 0;
			pthread_cond_broadcast(&sp->cond);
		} else if (c->err) {
			ret = c->err;
		}
		pthread_mutex_unlock(&sp->lock);
		/* A connection's clean end is the stream's. */
		if (!sp->cur)
			return ret;
	}
	k = MIN(len, (size_t)(sp->cur->len - sp->cur->pos));
	memcpy(buf, sp->cur->data + sp->cur->pos, k);
	sp->cur->pos += (uint32_t)k;
	return (long)k;
}

static bool stripe_would_block(void *opaque)
{
	struct stripe *sp = opaque;
	bool block;

	if (sp->cur && sp->cur->pos < sp->cur->len)
		return false;
	pthread_mutex_lock(&sp->lock);
	block = !sp->c[sp->seq % sp->n].count;
	pthread_mutex_unlock(&sp->lock);
	return block;
}

static void stripe_free(struct stripe *sp)
{
	unsigned int i;
	struct chunk *ch;

	pthread_mutex_lock(&sp->lock);
	/* Read without the lock by a receiver between its system calls. */
	__atomic_store_n(&sp->stopping, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
	/* A thread blocked on a stalled peer wakes now. */
	for (i = 0; i < sp->n; i++)
		if (sp->c[i].started)
			shutdown(sp->c[i].fd, SHUT_RDWR);
	for (i = 0; i < sp->n; i++) {
		struct stripe_conn *c = &sp->c[i];

		if (c->started)
			pthread_join(c->thread, NULL);
		while (c->count) {
			free(c->q[c->head]);
			c->head = (c->head + 1) % STRIPE_QUEUE;
			c->count--;
		}
		close(c->fd);
	}
	free(sp->cur);
	while ((ch = sp->free)) {
		sp->free = ch->next;
		free(ch);
	}
	pthread_mutex_destroy(&sp->lock);
	pthread_cond_destroy(&sp->cond);
	free(sp->c);
	free(sp);
}

static void stripe_close(void *opaque)
{
	stripe_free(opaque);
}

static const struct stream_backend writer_ops = {
	.write_full = stripe_write,
	.flush = stripe_flush,
	.close = stripe_close,
};

static const struct stream_backend reader_ops = {
	.read_some = stripe_read,
	.would_block = stripe_would_block,
	.close = stripe_close,
};

int stripe_open(const int *fds, unsigned int n, bool writing,
		unsigned int timeout_ms, struct stream **out)
{
	struct stripe *sp = calloc(1, sizeof(*sp));
	unsigned int i;
	int ret = -ENOMEM;

	if (!sp || !(sp->c = calloc(n, sizeof(*sp->c)))) {
		free(sp);
		for (i = 0; i < n; i++)
			close(fds[i]);
		return -ENOMEM;
	}
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->cond, NULL);
	sp->n = n;
	sp->timeout_ms = timeout_ms;
	for (i = 0; i < n; i++) {
		sp->c[i].sp = sp;
		sp->c[i].index = i;
		sp->c[i].fd = fds[i];
	}
	for (i = 0; i < n; i++) {
		ret = -pthread_create(&sp->c[i].thread, NULL,
				      writing ? sender : receiver, &sp->c[i]);
		if (ret < 0)
			break;
		sp->c[i].started = true;
	}
	if (!ret)
		ret = stream_open_backend(writing ? &writer_ops : &reader_ops,
					  sp, writing, out);
	if (ret < 0)
		stripe_free(sp);
	return ret;
}
