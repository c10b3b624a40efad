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
   per-call commands count thread CPU time):
     hs KEY MUTUAL CALLBACK N THREADS TRUST CLOCK
                                        N handshakes on each of THREADS threads;
                                        answers time / (N * THREADS), CLOCK cpu
                                        (one thread's CPU time) or wall
     calls KEY MUTUAL                   verify callback calls in one handshake
     chain KEY N                        copy + release of the client's view of
                                        the server chain (up-ref each, free each)
     serial KEY N                       read the leaf's serial number bytes
     quit
   KEY is ecdsa or rsa; MUTUAL and CALLBACK are 0 or 1. */

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    return (double)t0 / n;
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
        memcpy(buf, ASN1_STRING_get0_data(serial), len > 64 ? 64 : len);
        sink += buf[0];
    }
    t0 = cpu_ns() - t0;
    SSL_free(c);
    SSL_free(s);
    return (double)t0 / n;
}

static long cmd_calls(int key, int mutual)
{
    long before = callback_calls;
    handshake(get_pair(key, mutual, 1, 0), NULL, NULL);
    return callback_calls - before;
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
    int mutual, callback, threads, trust;

    if (argc != 3) {
        fprintf(stderr, "usage: floor ECDSA_DIR RSA_DIR\n");
        return 2;
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
        else if (strcmp(cmd, "serial") == 0 && sscanf(line, "%*s %15s %ld", key, &n) == 2)
            printf("%.2f\n", cmd_serial(key_index(key), n));
        else
            die("unknown command");
        fflush(stdout);
    }
    return 0;
}
