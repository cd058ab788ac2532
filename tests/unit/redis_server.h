/*
 * redis_server: a private redis-server for the C tests that talk to a real
 * one (test_bus, test_fanout_bus), in its own temporary folder, on a free
 * loopback port and a unix socket. The child dies with the test even when the
 * test is killed before its cleanup (PR_SET_PDEATHSIG). A header of static
 * functions, like check.h: each test has one server.
 */
#ifndef RN_REDIS_SERVER_H
#define RN_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char redis_dir[64], redis_sock[128], redis_log[128];
static int redis_port;
static pid_t redis_pid = -1;

static int redis_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        p = ntohs(sa.sin_port);
    close(fd);
    return p;
}

/* Starts (or restarts, on the same port) the server; 0 or -1. Nothing waits for it to listen. */
static int redis_server_start(void)
{
    char portstr[16];
    pid_t parent = getpid();

    snprintf(portstr, sizeof(portstr), "%d", redis_port);
    if ((redis_pid = fork()) < 0)
        return -1;
    if (redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execlp("redis-server", "redis-server", "--save", "", "--appendonly", "no", "--port",
               portstr, "--bind", "127.0.0.1", "--dir", redis_dir, "--unixsocket", redis_sock,
               "--unixsocketperm", "700", "--logfile", redis_log, (char *)NULL);
        fprintf(stderr, "cannot run redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    return 0;
}

static void redis_server_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

static int redis_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void redis_server_cleanup(void)
{
    redis_server_kill();
    nftw(redis_dir, redis_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Makes /tmp/rn-<name>-XXXXXX, picks a port, and cleans up at exit; 0 or -1 (errno). */
static int redis_server_init(const char *name)
{
    snprintf(redis_dir, sizeof(redis_dir), "/tmp/rn-%s-XXXXXX", name);
    if (mkdtemp(redis_dir) == NULL || (redis_port = redis_free_port()) < 0)
        return -1;
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", redis_dir);
    snprintf(redis_log, sizeof(redis_log), "%s/redis.log", redis_dir);
    atexit(redis_server_cleanup);
    return 0;
}

#endif
