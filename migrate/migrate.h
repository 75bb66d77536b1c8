/* SPDX-License-Identifier: MIT */
#ifndef VMM_MIGRATE_MIGRATE_H
#define VMM_MIGRATE_MIGRATE_H

/*
 * Live migration (docs/migration-protocol.md): a running machine moves
 * over one connection as the snapshot stream of a live save (pre-copy
 * rounds while its vCPUs run, then the last pages and all state with
 * them frozen), framed by a handshake before it and the destination's
 * acceptance after it. The source stops only once the destination has
 * loaded everything and said so; until then any failure (a refusal, a
 * closed or stalled connection) leaves the source running, untouched.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"
#include "snapshot/image.h"

struct machine;
struct vmsnap_restore_opts;
struct vmsnap_stats;

/* Protocol version this vmrun speaks (the handshake's). */
#define MIGRATE_VERSION 3
/* Default for a stalled connection: no byte moves for this long. */
#define MIGRATE_IO_TIMEOUT_MS 60000

/* Where a migration goes: tcp:HOST:PORT, unix:PATH or fd:N. */
struct migrate_uri {
	enum { MIGRATE_TCP, MIGRATE_UNIX, MIGRATE_FD } kind;
	char host[256];
	char port[16];
	char path[108];
	int fd;
};

/* Parses @uri; -EINVAL with a reason in @err if it is none of the above. */
int migrate_uri_parse(const char *uri, struct migrate_uri *u, char *err,
		      size_t errlen) __must_check;

/*
 * The source's end: a connection to @u (fd: the descriptor itself) with
 * send and receive time-outs of @timeout_ms. Returns the fd or -errno.
 */
int migrate_connect(const struct migrate_uri *u, int timeout_ms, char *err,
		    size_t errlen) __must_check;

/*
 * The destination's end, in two steps so that the caller can say where
 * it listens before it blocks: migrate_listen() binds @u (tcp or unix;
 * tcp port 0 takes a free port, written back into @u->port) and returns
 * the listening fd; migrate_accept() takes a connection and returns it
 * with receive and send time-outs of @timeout_ms. The listener stays
 * open for a migration's further connections: the caller closes it (and
 * removes a unix socket's path). For fd:N there is nothing to listen on:
 * migrate_accept() checks and returns N. migrate_accept_within() waits
 * @wait_ms at most (-ETIMEDOUT). All return -errno on failure.
 */
int migrate_listen(struct migrate_uri *u, char *err,
		   size_t errlen) __must_check;
int migrate_accept(int lfd, const struct migrate_uri *u, int timeout_ms,
		   char *err, size_t errlen) __must_check;
int migrate_accept_within(int lfd, const struct migrate_uri *u, int wait_ms,
			  int timeout_ms, char *err,
			  size_t errlen) __must_check;

/* Running rounds at most before a migration that does not converge
 * gives up (the source runs on). */
#define MIGRATE_MAX_ROUNDS 100
/* Auto-converge: the first throttle, and the step for each round that
 * does not shrink (percent of the vCPUs' time taken away). */
#define MIGRATE_THROTTLE_FIRST 20
#define MIGRATE_THROTTLE_STEP 10

struct migrate_opts {
	enum image_codec codec;
	/* Threads compressing batches while the stream goes out (0: the
	 * default of vmsnap_threads()). */
	unsigned int threads;
	/* Batches go raw while every thread is busy (vmsnap_save_opts). */
	bool adaptive;
	/* The stream goes on this many further connections to @uri (0 or
	 * 1: on the first, with the handshake; at most STRIPE_MAX_CONNS,
	 * 16), a thread each (docs/migration-protocol.md). */
	unsigned int connections;
	const struct migrate_uri *uri;
	uint64_t downtime_ns;	 /* the frozen end's target */
	uint64_t bandwidth;	 /* bytes/s while the vCPUs run (0: no cap) */
	uint64_t max_ns;	 /* give up after this long (0: never) */
	unsigned int max_rounds; /* running rounds at most (0: the default) */
	/* No progress on the link for this long fails it (0: the default,
	 * MIGRATE_IO_TIMEOUT_MS); the socket's own time-outs should match. */
	unsigned int io_timeout_ms;
	/* Throttle the vCPUs, more each round, while rounds do not shrink. */
	bool auto_converge;
	/* A progress frame for a client: @done of @total pages this pass. */
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	/*
	 * The caller's event loop, run between slices and while the
	 * migration waits for its destination (may be NULL): it serves the
	 * control socket (status, cancel) and the back ends. -errno cancels
	 * the migration, which then leaves the VM running untouched, up to
	 * the moment the destination is told to go.
	 */
	int (*service)(void *opaque);
	void *opaque;
};

enum migrate_phase {
	MIGRATE_HANDSHAKE, /* hello, then the machine's check on the far side */
	MIGRATE_ROUNDS,	   /* memory sent while the vCPUs run */
	MIGRATE_FINAL,	   /* the vCPUs frozen: the last pages and the state */
	MIGRATE_ACCEPT,	   /* waiting for the destination to load it */
	MIGRATE_DONE,
	MIGRATE_FAILED,
};

const char *migrate_phase_name(enum migrate_phase p);

/* Kept up to date while the migration runs: the caller's service()
 * may read it (same thread). */
struct migrate_stats {
	enum migrate_phase phase;
	unsigned int round;  /* the running round under way (0: all memory) */
	uint64_t bytes;	     /* on the wire */
	uint64_t pages;	     /* sent, zero pages included (at the end) */
	uint64_t zero_pages; /* of which sent as zero (no data) */
	uint64_t data_pages; /* sent as data (at the end) */
	uint64_t mem_bytes;
	uint64_t pass_done, pass_total; /* pages of the pass under way */
	uint64_t ns;			/* so far, or the whole migration */
	uint64_t frozen_ns;  /* the source's vCPUs frozen at the end */
	uint64_t accept_ns;  /* of which waiting for the destination to load */
	unsigned int rounds; /* rounds written with the vCPUs running */
	/* The last running round's: what it sent, how fast, how fast the
	 * guest dirtied memory meanwhile (bytes/s), what is dirty now and
	 * how long sending it frozen would take at that rate. */
	uint64_t last_round_pages, last_round_ns, last_round_bytes;
	uint64_t bandwidth, dirty_rate, remaining_pages, expected_downtime_ns;
	unsigned int throttle, throttle_max; /* percent: now, highest */
	uint64_t batches,
		raw_batches;	  /* data batches, of them raw (at the end) */
	unsigned int connections; /* the stream went on */
};

/*
 * Migrates @m over the connected socket @fd: handshake, live save,
 * acceptance. On success the VM has been stopped (vm_stop, reason
 * requested, detail naming @peer) while still frozen, so its vCPUs never
 * run again here; on failure it runs on as before, and @err says why
 * (the destination's own reason when it gave one).
 */
int migrate_send(struct machine *m, int fd, const char *peer,
		 const struct migrate_opts *o, struct migrate_stats *st,
		 char *err, size_t errlen) __must_check;

/*
 * The destination's side over the connected socket @fd (and, when the
 * source asks for several connections, those it accepts on the listener
 * @lfd, or -1 for none: fd:N): handshake, the
 * machine read and loaded (@o as for a restore), acceptance sent, and
 * the source's go-ahead awaited. Returns the machine, ready to run, or
 * -errno with @err saying why: -EINVAL/-EBADMSG/-EPROTONOSUPPORT for a
 * stream refused (nothing ran), others for a failure of the link or of
 * this host.
 */
int migrate_recv(int fd, int lfd, const struct migrate_uri *u, const char *peer,
		 const struct vmsnap_restore_opts *o, struct machine **out,
		 struct vmsnap_stats *st, char *err,
		 size_t errlen) __must_check;

#endif /* VMM_MIGRATE_MIGRATE_H */
