/* TLS client configuration on mbedTLS 2.28, and the pieces of a TLS session the stream drives.
 *
 * A config (CA bundle, optional client certificate, insecure flag) is built once and shared by
 * reference between every stream that uses it; its identity string is part of the HTTP pool key,
 * so two configs with different CAs or client certificates never share a connection.
 *
 * mbedTLS 2.28 speaks TLS 1.2 at most (its TLS 1.3 code is experimental and not built by Debian):
 * a server that only accepts TLS 1.3 cannot be reached. Kubernetes, Prometheus and Redis all still
 * accept TLS 1.2.
 *
 * mbedTLS 2.28 checks only dNSName subject-alternative names (and the CN). Kubernetes is routinely
 * reached by IP address (KUBERNETES_SERVICE_HOST, kubeadm/kind kubeconfigs, our loopback control
 * plane), so for an IP literal evscale checks the certificate's iPAddress SANs itself in a verify
 * callback (evs_tls_crt_has_ip), and sends no SNI (RFC 6066 section 3 forbids IP literals there).
 */
#ifndef EVSCALE_TLS_H
#define EVSCALE_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

typedef struct evs_tls_config_s evs_tls_config_t;

typedef struct {
  /* Trusted CAs: a PEM/DER file (a bundle may hold many), and/or PEM text in memory (NUL
   * terminated or with ca_pem_len). Both borrowed. Neither set: verification has no anchor and
   * every verified connect fails with EVS_ECERT (use insecure for that, knowingly). */
  const char *ca_file;
  const char *ca_pem;
  size_t ca_pem_len;
  /* Client certificate and key, as files or PEM text (borrowed). Both or neither. */
  const char *cert_file;
  const char *key_file;
  const char *cert_pem;
  size_t cert_pem_len;
  const char *key_pem;
  size_t key_pem_len;
  /* Skip certificate verification. Logged as a warning on every connect. */
  int insecure;
} evs_tls_options_t;

/* Builds a config. Reads the files synchronously: call it at startup or from the thread pool,
 * never on a running loop. *out is new (refcount 1); release with evs_tls_config_unref.
 * Returns 0, UV_EINVAL (bad options), EVS_ETLS (unparsable certificate/key, with mbedTLS's reason
 * in *why when why is not NULL: a static string), UV_ENOMEM. */
int evs_tls_config_new(const evs_tls_options_t *opts, evs_tls_config_t **out, const char **why);
evs_tls_config_t *evs_tls_config_ref(evs_tls_config_t *cfg);
void evs_tls_config_unref(evs_tls_config_t *cfg);
/* A short string that identifies what the config trusts and presents (borrowed, lives as long
 * as cfg): equal strings mean interchangeable connections. */
const char *evs_tls_config_identity(const evs_tls_config_t *cfg);
int evs_tls_config_insecure(const evs_tls_config_t *cfg);

/* Whether the certificate's subjectAltName extension lists iPAddress ip (4 or 16 bytes).
 * Returns 1 (listed), 0 (not listed, no SAN, or a malformed extension). Parses crt->v3_ext with
 * mbedtls_asn1_*, because 2.28's crt->subject_alt_names holds dNSName entries only. */
int evs_tls_crt_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t ip_len);

/* mbedTLS error code (negative) → evscale/libuv code: the one conversion for this library. */
int evs_tls_error(int mbedtls_ret);

/* --- Internal to src/net (the stream drives a session; exposed for stream.c and tests). --- */

/* One TLS client session over memory buffers: ciphertext read from the socket is appended with
 * evs_tls__session_feed; ciphertext to send accumulates in out/out_len and the stream takes it
 * with evs_tls__session_take_out. The BIO callbacks never block: with no input they return
 * MBEDTLS_ERR_SSL_WANT_READ. */
typedef struct {
  mbedtls_ssl_context ssl;
  evs_tls_config_t *cfg; /* a reference */
  unsigned char *in;
  size_t in_len, in_cap, in_off;
  unsigned char *out;
  size_t out_len, out_cap;
  unsigned char peer_ip[16];
  size_t peer_ip_len; /* 0 when the peer was named by a host name */
  int verify_ip_failed;
} evs_tls__session_t;

/* host: the name the user asked for. When it is an IP literal, SNI is not sent and the IP SAN
 * check is used; otherwise the name is sent as SNI and checked by mbedTLS. */
int evs_tls__session_init(evs_tls__session_t *s, evs_tls_config_t *cfg, const char *host);
void evs_tls__session_free(evs_tls__session_t *s);
int evs_tls__session_feed(evs_tls__session_t *s, const void *buf, size_t len);
/* 0 done, 1 wants more input, or a negative error (EVS_ECERT for a verification failure). */
int evs_tls__session_handshake(evs_tls__session_t *s);
/* Decrypted bytes into buf: >0 count, 0 wants more input, EVS_ECLOSED on close_notify, <0 error. */
int evs_tls__session_read(evs_tls__session_t *s, void *buf, size_t cap);
/* Encrypts all of buf into the out buffer. 0 or a negative error. */
int evs_tls__session_write(evs_tls__session_t *s, const void *buf, size_t len);
/* Moves the pending ciphertext to the caller (new, free()), or *buf NULL when none. */
void evs_tls__session_take_out(evs_tls__session_t *s, unsigned char **buf, size_t *len);
/* Queues a close_notify alert into the out buffer. */
int evs_tls__session_close_notify(evs_tls__session_t *s);
/* Whether decrypted or undecrypted input remains buffered. */
int evs_tls__session_pending(const evs_tls__session_t *s);

#endif
