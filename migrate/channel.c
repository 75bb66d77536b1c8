/* SPDX-License-Identifier: MIT */
/* Migration connections: tcp:HOST:PORT, unix:PATH, fd:N (see migrate.h). */
#include "migrate/migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "kernel/util/log.h"
#include "migrate/migrate_priv.h"

int migrate_uri_parse(const char *uri, struct migrate_uri *u, char *err,
		      size_t errlen)
{
	const char *colon, *whole = uri;
	char *end;
	long n;

	memset(u, 0, sizeof(*u));
	u->fd = -1;
	if (!strncmp(uri, "tcp:", 4)) {
		uri += 4;
		colon = strrchr(uri, ':');
		if (!colon || colon == uri || !colon[1] ||
		    (size_t)(colon - uri) >= sizeof(u->host) ||
		    strlen(colon + 1) >= sizeof(u->port))
			goto bad;
		n = strtol(colon + 1, &end, 10);
		/* Port 0: any free one, for a listener. */
		if (*end || n < 0 || n > 65535)
			goto bad;
		u->kind = MIGRATE_TCP;
		/* [v6 address]:port */
		if (uri[0] == '[' && colon[-1] == ']')
			snprintf(u->host, sizeof(u->host), "%.*s",
				 (int)(colon - uri - 2), uri + 1);
		else
			snprintf(u->host, sizeof(u->host), "%.*s",
				 (int)(colon - uri), uri);
		snprintf(u->port, sizeof(u->port), "%s", colon + 1);
		return 0;
	}
	if (!strncmp(uri, "unix:", 5)) {
		if (!uri[5] || strlen(uri + 5) >= sizeof(u->path))
			goto bad;
		u->kind = MIGRATE_UNIX;
		snprintf(u->path, sizeof(u->path), "%s", uri + 5);
		return 0;
	}
	if (!strncmp(uri, "fd:", 3)) {
		n = strtol(uri + 3, &end, 10);
		if (!uri[3] || *end || n < 0 || n > 1 << 20)
			goto bad;
		u->kind = MIGRATE_FD;
		u->fd = (int)n;
		return 0;
	}
bad:
	return err_printf(err, errlen, -EINVAL,
			  "'%s': expected tcp:HOST:PORT, unix:PATH or fd:N",
			  whole);
}

/* Time-outs on both directions: a stalled peer fails a call, never
 * hangs it. */
static int set_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = (timeout_ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* The descriptor of fd:N, checked to be a connected stream socket. */
static int given_fd(const struct migrate_uri *u, int timeout_ms, char *err,
		    size_t errlen)
{
	struct stat sb;
	int type = 0;
	socklen_t len = sizeof(type);

	if (fstat(u->fd, &sb) < 0 || !S_ISSOCK(sb.st_mode) ||
	    getsockopt(u->fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    type != SOCK_STREAM)
		return err_printf(err, errlen, -EINVAL,
				  "fd:%d is not an open stream socket", u->fd);
	fcntl(u->fd, F_SETFD, FD_CLOEXEC);
	if (set_timeouts(u->fd, timeout_ms) < 0)
		return err_printf(err, errlen, -errno, "fd:%d: %s", u->fd,
				  strerror(errno));
	return u->fd;
}

static int tcp_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int migrate_connect(const struct migrate_uri *u, int timeout_ms, char *err,
		    size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = -1, ret;

	if (u->kind == MIGRATE_FD)
		return given_fd(u, timeout_ms, err, errlen);
	if (u->kind == MIGRATE_UNIX) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_printf(err, errlen, -errno, "socket: %s",
					  strerror(errno));
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", u->path);
		if (set_timeouts(fd, timeout_ms) < 0 ||
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			ret = -errno;
			close(fd);
			return err_printf(err, errlen, ret, "unix:%s: %s",
					  u->path, strerror(-ret));
		}
		return fd;
	}
	ret = getaddrinfo(u->host, u->port, &hints, &res);
	if (ret)
		return err_printf(err, errlen, -EHOSTUNREACH, "tcp:%s:%s: %s",
				  u->host, u->port, gai_strerror(ret));
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		/* The send time-out bounds connect() too. */
		if (set_timeouts(fd, timeout_ms) == 0 &&
		    connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return err_printf(err, errlen, ret, "tcp:%s:%s: %s", u->host,
				  u->port, strerror(-ret));
	tcp_nodelay(fd);
	return fd;
}

int migrate_listen(struct migrate_uri *u, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res = NULL;
	int lfd, one = 1, ret;

	if (u->kind == MIGRATE_FD)
		return err_printf(err, errlen, -EINVAL,
				  "fd:%d is a connection, not a place to "
				  "listen",
				  u->fd);
	if (u->kind == MIGRATE_UNIX) {
		lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", u->path);
		unlink(u->path);
		ret = lfd < 0 || bind(lfd, (struct sockaddr *)&sun,
				      sizeof(sun)) < 0 ?
			      -errno :
			      0;
	} else {
		ret = getaddrinfo(u->host[0] ? u->host : NULL, u->port, &hints,
				  &res);
		if (ret)
			return err_printf(err, errlen, -EINVAL, "tcp:%s:%s: %s",
					  u->host, u->port, gai_strerror(ret));
		lfd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
			     res->ai_protocol);
		ret = lfd < 0 ? -errno : 0;
		if (!ret)
			setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one,
				   sizeof(one));
		if (!ret && bind(lfd, res->ai_addr, res->ai_addrlen) < 0)
			ret = -errno;
		freeaddrinfo(res);
	}
	if (!ret && listen(lfd, STRIPE_MAX_CONNS + 1) < 0)
		ret = -errno;
	if (ret < 0) {
		if (lfd >= 0)
			close(lfd);
		return err_printf(err, errlen, ret, "listening on %s%s%s: %s",
				  u->kind == MIGRATE_UNIX ? u->path : u->host,
				  u->kind == MIGRATE_UNIX ? "" : ":",
				  u->kind == MIGRATE_UNIX ? "" : u->port,
				  strerror(-ret));
	}
	/* Port 0: the port the kernel chose, for the operator to give. */
	if (u->kind == MIGRATE_TCP &&
	    getsockname(lfd, (struct sockaddr *)&ss, &sl) == 0)
		snprintf(u->port, sizeof(u->port), "%u",
			 ntohs(ss.ss_family == AF_INET6 ?
				       ((struct sockaddr_in6 *)&ss)->sin6_port :
				       ((struct sockaddr_in *)&ss)->sin_port));
	return lfd;
}

int migrate_accept(int lfd, const struct migrate_uri *u, int timeout_ms,
		   char *err, size_t errlen)
{
	int fd, ret;

	if (u->kind == MIGRATE_FD)
		return given_fd(u, timeout_ms, err, errlen);
	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return err_printf(err, errlen, -errno, "accepting: %s",
				  strerror(errno));
	if (u->kind == MIGRATE_TCP)
		tcp_nodelay(fd);
	if (set_timeouts(fd, timeout_ms) < 0) {
		ret = -errno;
		close(fd);
		return err_printf(err, errlen, ret, "socket: %s",
				  strerror(-ret));
	}
	return fd;
}

int migrate_accept_within(int lfd, const struct migrate_uri *u, int wait_ms,
			  int timeout_ms, char *err, size_t errlen)
{
	if (!wire_readable(lfd, wait_ms))
		return err_printf(err, errlen, -ETIMEDOUT,
				  "no connection came (timed out)");
	return migrate_accept(lfd, u, timeout_ms, err, errlen);
}
