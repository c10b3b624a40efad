/* The C floor of the commssl benchmark: the same work as the Python contenders,
   written directly against libssl, so that what each binding adds can be read
   off as a difference.

   Contexts are configured as commssl's make_ssl_ctx makes them (TLS >= 1.2, no
   renegotiation, no compression; the client verifies against the chain's root
   plus the system's default CA file and directory (TRUST 0), or plus
   SSL_CTX_set_default_verify_paths (TRUST 1: on OpenSSL < 3.4 that also adds
   a "store" lookup of the default directory), and checks the name
   "localhost"; with mutual TLS the
   server requires and verifies a client certificate). Each handshake makes
   two SSLs joined by a BIO pair, drives them in turn until both are done, and
   frees them.

   Usage: floor ECDSA_DIR RSA_DIR, then one command per line on stdin, one
   answer line on stdout (nanoseconds per operation, as a decimal; the
   per-call commands count thread CPU time; the socket commands wall time):
     hs KEY MUTUAL CALLBACK N THREADS TRUST CLOCK
                                        N handshakes on each of THREADS threads;
                                        answers time / (N * THREADS), CLOCK cpu
                                        (one thread's CPU time) or wall
     calls KEY MUTUAL                   verify callback calls in one handshake
     chain KEY N                        copy + release of the client's view of
                                        the server chain (up-ref each, free each)
     serial KEY N                       read the leaf's serial number bytes
     sockhs PORT N                      N blocking handshakes over loopback with
                                        a `floor serve` server on 127.0.0.1:PORT
                                        (ECDSA, TRUST 0): connect, handshake,
                                        write "h", read "k", SSL_shutdown once
                                        (close_notify, no wait), close; answers
                                        wall time / N
     sockbulk PORT BYTES                one connection: write "b" + BYTES as 8
                                        big-endian bytes, then BYTES (whole 64 KiB
                                        SSL_writes), read "k"; answers the wall
                                        time from "b" to "k"
     quit
   KEY is ecdsa or rsa; MUTUAL and CALLBACK are 0 or 1.

   Or: floor serve CHAIN_DIR, the loopback server of the socket rows, as
   bench/server.py serves them: listens on 127.0.0.1 (a free port, printed on
   stdout), then serves one connection at a time with blocking sockets until
   its stdin closes: SSL_accept, read the request byte ("h": answer "k"; "b":
   read the 8-byte big-endian length, read and drop that many bytes, answer
   "k"), SSL_shutdown once (close_notify, without waiting for the peer's, as
   commssl's stream close() does), close. Both ends read with
   SSL_set_read_ahead, OpenSSL's own read buffering (commssl reads through a
   64 KiB buffer BIO). */

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    SSL_CTX *client, *server;
} ctx_pair;

static const char *dirs[2];
static ctx_pair pairs[2][2][2][2]; /* [key][mutual][callback][trust] */
static volatile long callback_calls;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU time of the calling thread: what single-threaded rows report, so that
   other processes on a shared machine disturb them less than wall time would. */
static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "floor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int accept_cb(int ok, X509_STORE_CTX *store)
{
    (void)store;
    __atomic_add_fetch(&callback_calls, 1, __ATOMIC_RELAXED);
    return ok;
}

static SSL_CTX *new_ctx(int server, const char *dir, int mutual, int callback, int trust)
{
    char chain[4096], key[4096], root[4096];
    const char *who = server ? "server" : "client";
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    int verify = server ? (mutual ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE)
                        : SSL_VERIFY_PEER;

    if (ctx == NULL)
        die("SSL_CTX_new");
    snprintf(chain, sizeof chain, "%s/%s-chain.pem", dir, who);
    snprintf(key, sizeof key, "%s/%s.key", dir, who);
    snprintf(root, sizeof root, "%s/root.pem", dir);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (server || mutual) {
        if (SSL_CTX_use_certificate_chain_file(ctx, chain) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            die("loading the certificate and key");
    }
    if (!server && trust)
        SSL_CTX_set_default_verify_paths(ctx);
    else if (!server && !(SSL_CTX_set_default_verify_file(ctx) && SSL_CTX_set_default_verify_dir(ctx)))
        die("loading the default CA file and directory");
    if ((!server || mutual) && SSL_CTX_load_verify_locations(ctx, root, NULL) != 1)
        die("loading the root");
    SSL_CTX_set_verify(ctx, verify, callback ? accept_cb : NULL);
    return ctx;
}

static ctx_pair *get_pair(int key, int mutual, int callback, int trust)
{
    ctx_pair *p = &pairs[key][mutual][callback][trust];
    if (p->client == NULL) {
        p->client = new_ctx(0, dirs[key], mutual, callback, trust);
        p->server = new_ctx(1, dirs[key], mutual, callback, trust);
    }
    return p;
}

/* One full handshake; leaves the pair connected in *cp / *sp when asked. */
static void handshake(ctx_pair *p, SSL **cp, SSL **sp)
{
    SSL *c = SSL_new(p->client), *s = SSL_new(p->server);
    BIO *cb, *sb;
    int c_done = 0, s_done = 0, r, rounds = 0;

    if (c == NULL || s == NULL || !BIO_new_bio_pair(&cb, 0, &sb, 0))
        die("SSL_new / BIO_new_bio_pair");
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_mode(c, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_mode(s, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    SSL_set_tlsext_host_name(c, "localhost");
    SSL_set1_host(c, "localhost");
    while (!(c_done && s_done)) {
        if (++rounds > 20)
            die("the handshake does not finish");
        if (!c_done) {
            r = SSL_do_handshake(c);
            if (r == 1)
                c_done = 1;
            else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
                die("client handshake");
        }
        if (!s_done) {
            r = SSL_do_handshake(s);
            if (r == 1)
                s_done = 1;
            else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
                die("server handshake");
        }
    }
    if (cp != NULL) {
        *cp = c;
        *sp = s;
    } else {
        SSL_free(c);
        SSL_free(s);
    }
}

/* The key exchange group one server-auth handshake negotiates, as OpenSSL names it. */
static const char *cmd_group(int key)
{
    SSL *c, *s;
    const char *name;
    handshake(get_pair(key, 0, 0, 0), &c, &s);
    name = SSL_group_to_name(c, SSL_get_negotiated_group(c));
    SSL_free(c);
    SSL_free(s);
    return name != NULL ? name : "unknown";
}

typedef struct {
    ctx_pair *p;
    long n;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    long i;
    for (i = 0; i < j->n; i++)
        handshake(j->p, NULL, NULL);
    return NULL;
}

static double cmd_hs(int key, int mutual, int callback, long n, int threads, int trust, int cpu)
{
    pthread_t tid[64];
    job j = {get_pair(key, mutual, callback, trust), n};
    long long t0;
    int i;

    if (threads < 1 || threads > 64)
        die("threads must be 1..64");
    if (cpu && threads != 1)
        die("CPU time is for one thread only");
    t0 = cpu ? cpu_ns() : now_ns();
    if (threads == 1) {
        run_job(&j);
    } else {
        for (i = 0; i < threads; i++)
            if (pthread_create(&tid[i], NULL, run_job, &j) != 0)
                die("pthread_create");
        for (i = 0; i < threads; i++)
            pthread_join(tid[i], NULL);
    }
    return (double)((cpu ? cpu_ns() : now_ns()) - t0) / ((double)n * threads);
}

static double cmd_chain(int key, long n)
{
    SSL *c, *s;
    X509 *out[16];
    long i;
    long long t0;
    int k, m;

    handshake(get_pair(key, 0, 0, 0), &c, &s);
    t0 = cpu_ns();
    for (i = 0; i < n; i++) {
        STACK_OF(X509) *sk = SSL_get_peer_cert_chain(c);
        m = sk_X509_num(sk);
        for (k = 0; k < m && k < 16; k++) {
            out[k] = sk_X509_value(sk, k);
            X509_up_ref(out[k]);
        }
        for (k = 0; k < m && k < 16; k++)
            X509_free(out[k]);
    }
    t0 = cpu_ns() - t0;
    SSL_free(c);
    SSL_free(s);
    return (double)t0 / (double)n;
}

static double cmd_serial(int key, long n)
{
    SSL *c, *s;
    unsigned char buf[64];
    volatile int sink = 0;
    long i;
    long long t0;
    X509 *leaf;

    handshake(get_pair(key, 0, 0, 0), &c, &s);
    leaf = SSL_get0_peer_certificate(c);
    t0 = cpu_ns();
    for (i = 0; i < n; i++) {
        const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
        int len = ASN1_STRING_length(serial);
        memcpy(buf, ASN1_STRING_get0_data(serial), (size_t)(len > 64 ? 64 : len));
        sink += buf[0];
    }
    t0 = cpu_ns() - t0;
    SSL_free(c);
    SSL_free(s);
    return (double)t0 / (double)n;
}

static long cmd_calls(int key, int mutual)
{
    long before = callback_calls;
    handshake(get_pair(key, mutual, 1, 0), NULL, NULL);
    return callback_calls - before;
}

/* -- loopback sockets (rows 3 and 4) ------------------------------------------ */

#define CHUNK (64 * 1024)
static unsigned char chunk_buf[CHUNK];

/* 30 s send and receive timeouts, as the Python ends' timeout=30: a stuck peer
   fails the row instead of hanging the benchmark. */
static void set_timeouts(int fd)
{
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static struct sockaddr_in loopback_addr(int port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)port);
    return addr;
}

/* 1 when all n bytes came. */
static int read_full(SSL *ssl, unsigned char *buf, int n)
{
    int got = 0, r;
    while (got < n) {
        r = SSL_read(ssl, buf + got, n - got);
        if (r <= 0)
            return 0;
        got += r;
    }
    return 1;
}

/* Blocking, without SSL_MODE_ENABLE_PARTIAL_WRITE: SSL_write writes all or fails. */
static int write_full(SSL *ssl, const void *buf, int n)
{
    return SSL_write(ssl, buf, n) == n;
}

/* As commssl's stream close(): close_notify once when the handshake finished,
   without waiting for the peer's; then free and close. */
static void close_tls(SSL *ssl, int fd)
{
    if (SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

static int serve_one(SSL_CTX *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);
    unsigned char what = 0, len[8];
    unsigned long long left = 0;
    int ok = 0, i, r;

    if (ssl == NULL || !SSL_set_fd(ssl, fd))
        die("SSL_new / SSL_set_fd");
    set_timeouts(fd);
    SSL_set_read_ahead(ssl, 1);
    if (SSL_accept(ssl) == 1 && read_full(ssl, &what, 1)) {
        if (what == 'h') {
            ok = 1;
        } else if (what == 'b' && read_full(ssl, len, 8)) {
            for (i = 0; i < 8; i++)
                left = left << 8 | len[i];
            while (left > 0) {
                r = SSL_read(ssl, chunk_buf, left < CHUNK ? (int)left : CHUNK);
                if (r <= 0)
                    break;
                left -= (unsigned)r;
            }
            ok = left == 0;
        }
        ok = ok && write_full(ssl, "k", 1);
    }
    close_tls(ssl, fd);
    return ok;
}

static void *exit_with_parent(void *arg)
{
    (void)arg;
    while (fgetc(stdin) != EOF)
        ;
    _exit(0);
}

static void serve(const char *dir)
{
    SSL_CTX *ctx = new_ctx(1, dir, 0, 0, 0);
    struct sockaddr_in addr = loopback_addr(0);
    socklen_t len = sizeof addr;
    pthread_t tid;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fd;

    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 64) != 0
        || getsockname(lfd, (struct sockaddr *)&addr, &len) != 0)
        die("listening on 127.0.0.1");
    if (pthread_create(&tid, NULL, exit_with_parent, NULL) != 0)
        die("pthread_create");
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        if (!serve_one(ctx, fd)) { /* a failed connection must not stop the server */
            fprintf(stderr, "floor serve: a connection failed\n");
            ERR_print_errors_fp(stderr);
        }
        ERR_clear_error();
    }
}

/* A client connection to the floor server, handshake done. */
static SSL *sock_connect(int port, int *fdp)
{
    struct sockaddr_in addr = loopback_addr(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    SSL *ssl;

    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("connecting to the floor server");
    set_timeouts(fd);
    ssl = SSL_new(get_pair(0, 0, 0, 0)->client);
    if (ssl == NULL || !SSL_set_fd(ssl, fd))
        die("SSL_new / SSL_set_fd");
    SSL_set_read_ahead(ssl, 1);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1)
        die("client handshake over loopback");
    *fdp = fd;
    return ssl;
}

static void expect_k(SSL *ssl)
{
    unsigned char k = 0;
    if (!read_full(ssl, &k, 1) || k != 'k')
        die("the floor server did not answer");
}

static double cmd_sockhs(int port, long n)
{
    long long t0 = now_ns();
    long i;
    int fd;
    SSL *ssl;

    for (i = 0; i < n; i++) {
        ssl = sock_connect(port, &fd);
        if (!write_full(ssl, "h", 1))
            die("writing the request");
        expect_k(ssl);
        close_tls(ssl, fd);
        ERR_clear_error();
    }
    return (double)(now_ns() - t0) / (double)n;
}

static double cmd_sockbulk(int port, long long total)
{
    unsigned char head[9];
    long long t0, left;
    int fd, i;
    SSL *ssl = sock_connect(port, &fd);

    head[0] = 'b';
    for (i = 0; i < 8; i++)
        head[1 + i] = (unsigned char)((unsigned long long)total >> (56 - 8 * i));
    t0 = now_ns();
    if (!write_full(ssl, head, 9))
        die("writing the request");
    for (left = total; left > 0; left -= CHUNK)
        if (!write_full(ssl, chunk_buf, left < CHUNK ? (int)left : CHUNK))
            die("writing the bulk data");
    expect_k(ssl);
    t0 = now_ns() - t0;
    close_tls(ssl, fd);
    ERR_clear_error();
    return (double)t0;
}

static int key_index(const char *name)
{
    if (strcmp(name, "ecdsa") == 0)
        return 0;
    if (strcmp(name, "rsa") == 0)
        return 1;
    die("KEY must be ecdsa or rsa");
    return -1;
}

int main(int argc, char **argv)
{
    char line[256], cmd[16], key[16], clock[16];
    long n;
    long long total;
    int mutual, callback, threads, trust, port;

    if (argc != 3) {
        fprintf(stderr, "usage: floor ECDSA_DIR RSA_DIR | floor serve CHAIN_DIR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer gone early is an error return, as in Python */
    if (strcmp(argv[1], "serve") == 0) {
        serve(argv[2]); /* until stdin closes */
        return 0;
    }
    dirs[0] = argv[1];
    dirs[1] = argv[2];
    printf("ready %s\n", OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (sscanf(line, "%15s", cmd) != 1)
            continue;
        if (strcmp(cmd, "quit") == 0)
            break;
        if (strcmp(cmd, "hs") == 0
            && sscanf(line, "%*s %15s %d %d %ld %d %d %15s", key, &mutual, &callback, &n, &threads,
                      &trust, clock) == 7)
            printf("%.1f\n", cmd_hs(key_index(key), mutual != 0, callback != 0, n, threads, trust != 0,
                                     strcmp(clock, "cpu") == 0));
        else if (strcmp(cmd, "calls") == 0 && sscanf(line, "%*s %15s %d", key, &mutual) == 2)
            printf("%ld\n", cmd_calls(key_index(key), mutual != 0));
        else if (strcmp(cmd, "chain") == 0 && sscanf(line, "%*s %15s %ld", key, &n) == 2)
            printf("%.2f\n", cmd_chain(key_index(key), n));
        else if (strcmp(cmd, "group") == 0 && sscanf(line, "%*s %15s", key) == 1)
            printf("%s\n", cmd_group(key_index(key)));
        else if (strcmp(cmd, "serial") == 0 && sscanf(line, "%*s %15s %ld", key, &n) == 2)
            printf("%.2f\n", cmd_serial(key_index(key), n));
        else if (strcmp(cmd, "sockhs") == 0 && sscanf(line, "%*s %d %ld", &port, &n) == 2 && n > 0)
            printf("%.1f\n", cmd_sockhs(port, n));
        else if (strcmp(cmd, "sockbulk") == 0 && sscanf(line, "%*s %d %lld", &port, &total) == 2 && total >= 0)
            printf("%.1f\n", cmd_sockbulk(port, total));
        else
            die("unknown command");
        fflush(stdout);
    }
    return 0;
}
