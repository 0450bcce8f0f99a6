/* TLS client configuration and memory-BIO sessions on mbedTLS 2.28. See evscale/tls.h. */
#include "evscale/tls.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509.h>

#include "evscale/error.h"
#include "evscale/log.h"

struct evs_tls_config_s {
  unsigned refs;
  int insecure;
  int has_own_cert;
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca;
  mbedtls_x509_crt own_cert;
  mbedtls_pk_context own_key;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  char identity[80];
};

int evs_tls_error(int ret) {
  switch (ret) {
  case 0:
    return 0;
  case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
    return EVS_ECERT;
  case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
  case MBEDTLS_ERR_SSL_CONN_EOF:
    return EVS_ECLOSED;
  case MBEDTLS_ERR_SSL_ALLOC_FAILED:
  case MBEDTLS_ERR_X509_ALLOC_FAILED:
  case MBEDTLS_ERR_PK_ALLOC_FAILED:
    return UV_ENOMEM;
  case MBEDTLS_ERR_X509_FILE_IO_ERROR:
  case MBEDTLS_ERR_PK_FILE_IO_ERROR:
    return UV_ENOENT;
  case MBEDTLS_ERR_SSL_TIMEOUT:
    return EVS_ETIMEDOUT;
  default:
    return EVS_ETLS;
  }
}

/* PEM parsing in mbedTLS wants the terminating NUL counted in the length. */
static int parse_crt_mem(mbedtls_x509_crt *crt, const char *pem, size_t len) {
  if (len == 0)
    len = strlen(pem);
  char *copy = malloc(len + 1);
  if (copy == NULL)
    return MBEDTLS_ERR_X509_ALLOC_FAILED;
  memcpy(copy, pem, len);
  copy[len] = '\0';
  int rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)copy, len + 1);
  free(copy);
  return rc;
}

static int parse_key_mem(mbedtls_pk_context *pk, const char *pem, size_t len) {
  if (len == 0)
    len = strlen(pem);
  unsigned char *copy = malloc(len + 1);
  if (copy == NULL)
    return MBEDTLS_ERR_PK_ALLOC_FAILED;
  memcpy(copy, pem, len);
  copy[len] = '\0';
  int rc = mbedtls_pk_parse_key(pk, copy, len + 1, NULL, 0);
  mbedtls_platform_zeroize(copy, len + 1);
  free(copy);
  return rc;
}

static int load_ca(evs_tls_config_t *c, const evs_tls_options_t *o, const char **why) {
  int rc = 0;
  if (o->ca_file != NULL && (rc = mbedtls_x509_crt_parse_file(&c->ca, o->ca_file)) != 0) {
    *why = "cannot read or parse the CA file";
    return rc;
  }
  if (o->ca_pem != NULL && (rc = parse_crt_mem(&c->ca, o->ca_pem, o->ca_pem_len)) != 0) {
    *why = "cannot parse the CA PEM";
    return rc;
  }
  return 0;
}

static int load_own(evs_tls_config_t *c, const evs_tls_options_t *o, const char **why) {
  int rc;
  if (o->cert_file != NULL)
    rc = mbedtls_x509_crt_parse_file(&c->own_cert, o->cert_file);
  else
    rc = parse_crt_mem(&c->own_cert, o->cert_pem, o->cert_pem_len);
  if (rc != 0) {
    *why = "cannot read or parse the client certificate";
    return rc;
  }
  if (o->key_file != NULL)
    rc = mbedtls_pk_parse_keyfile(&c->own_key, o->key_file, NULL);
  else
    rc = parse_key_mem(&c->own_key, o->key_pem, o->key_pem_len);
  if (rc != 0) {
    *why = "cannot read or parse the client key";
    return rc;
  }
  /* mbedtls_ssl_conf_own_cert does not check the pair; a mismatch would only show as a
   * handshake failure on the server side, far from its cause. */
  if ((rc = mbedtls_pk_check_pair(&c->own_cert.pk, &c->own_key)) != 0) {
    *why = "client certificate does not match its key";
    return rc;
  }
  c->has_own_cert = 1;
  if ((rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->own_cert, &c->own_key)) != 0)
    *why = "client certificate does not match its key";
  return rc;
}

/* The identity hashes every trusted and presented certificate, so configs loaded from the same
 * files compare equal and the pool can share their connections. */
static void make_identity(evs_tls_config_t *c) {
  unsigned char h[32];
  mbedtls_sha256_context sha;
  mbedtls_sha256_init(&sha);
  mbedtls_sha256_starts_ret(&sha, 0);
  for (const mbedtls_x509_crt *x = &c->ca; x != NULL && x->raw.p != NULL; x = x->next)
    mbedtls_sha256_update_ret(&sha, x->raw.p, x->raw.len);
  mbedtls_sha256_update_ret(&sha, (const unsigned char *)"|", 1);
  for (const mbedtls_x509_crt *x = &c->own_cert; x != NULL && x->raw.p != NULL; x = x->next)
    mbedtls_sha256_update_ret(&sha, x->raw.p, x->raw.len);
  mbedtls_sha256_finish_ret(&sha, h);
  mbedtls_sha256_free(&sha);
  int n = snprintf(c->identity, sizeof c->identity, "%s:", c->insecure ? "insecure" : "verify");
  for (int i = 0; i < 16 && n + 2 < (int)sizeof c->identity; i++, n += 2)
    snprintf(c->identity + n, sizeof c->identity - (size_t)n, "%02x", h[i]);
}

static int setup_conf(evs_tls_config_t *c, const char **why) {
  static const char pers[] = "evscale";
  int rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                 (const unsigned char *)pers, sizeof pers - 1);
  if (rc != 0) {
    *why = "cannot seed the random generator";
    return rc;
  }
  rc = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                   MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) {
    *why = "cannot set TLS defaults";
    return rc;
  }
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  /* TLS 1.2 is the newest mbedTLS 2.28 speaks; older versions are not acceptable any more. */
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_authmode(&c->conf,
                            c->insecure ? MBEDTLS_SSL_VERIFY_NONE : MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
  return 0;
}

int evs_tls_config_new(const evs_tls_options_t *o, evs_tls_config_t **out, const char **why) {
  const char *dummy;
  if (why == NULL)
    why = &dummy;
  *why = NULL;
  int own = o->cert_file != NULL || o->cert_pem != NULL;
  int key = o->key_file != NULL || o->key_pem != NULL;
  if (own != key) {
    *why = "a client certificate needs a key and a key a certificate";
    return UV_EINVAL;
  }
  evs_tls_config_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  c->refs = 1;
  c->insecure = o->insecure;
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->ca);
  mbedtls_x509_crt_init(&c->own_cert);
  mbedtls_pk_init(&c->own_key);
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  int rc = setup_conf(c, why);
  if (rc == 0)
    rc = load_ca(c, o, why);
  if (rc == 0 && own)
    rc = load_own(c, o, why);
  if (rc != 0) {
    evs_tls_config_unref(c);
    return evs_tls_error(rc) == UV_ENOMEM ? UV_ENOMEM : EVS_ETLS;
  }
  make_identity(c);
  *out = c;
  return 0;
}

evs_tls_config_t *evs_tls_config_ref(evs_tls_config_t *c) {
  c->refs++;
  return c;
}

void evs_tls_config_unref(evs_tls_config_t *c) {
  if (c == NULL || --c->refs > 0)
    return;
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_x509_crt_free(&c->ca);
  mbedtls_x509_crt_free(&c->own_cert);
  mbedtls_pk_free(&c->own_key);
  mbedtls_ctr_drbg_free(&c->drbg);
  mbedtls_entropy_free(&c->entropy);
  free(c);
}

const char *evs_tls_config_identity(const evs_tls_config_t *c) { return c->identity; }
int evs_tls_config_insecure(const evs_tls_config_t *c) { return c->insecure; }

/* GeneralNames ::= SEQUENCE OF GeneralName; iPAddress is [7] IMPLICIT OCTET STRING holding 4
 * (IPv4) or 16 (IPv6) bytes (RFC 5280 section 4.2.1.6). */
static int san_has_ip(unsigned char *p, const unsigned char *end, const unsigned char *ip,
                      size_t ip_len) {
  size_t len;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
    return 0;
  end = p + len;
  while (p < end) {
    unsigned char tag = *p++;
    if (mbedtls_asn1_get_len(&p, end, &len) != 0)
      return 0;
    if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && len == ip_len && memcmp(p, ip, len) == 0)
      return 1;
    p += len;
  }
  return 0;
}

/* Extensions ::= SEQUENCE OF Extension; Extension ::= SEQUENCE { extnID OID, critical BOOLEAN
 * DEFAULT FALSE, extnValue OCTET STRING }. crt->v3_ext points at the Extensions SEQUENCE, inside
 * the [3] EXPLICIT wrapper (mbedtls library/x509.c mbedtls_x509_get_ext). */
int evs_tls_crt_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t ip_len) {
  if (crt == NULL || crt->v3_ext.p == NULL || (ip_len != 4 && ip_len != 16))
    return 0;
  unsigned char *p = crt->v3_ext.p;
  const unsigned char *end = p + crt->v3_ext.len;
  size_t len;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
    return 0;
  end = p + len;
  while (p < end) {
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
      return 0;
    const unsigned char *ext_end = p + len;
    mbedtls_x509_buf oid = {.tag = MBEDTLS_ASN1_OID};
    if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID) != 0)
      return 0;
    oid.p = p;
    p += oid.len;
    int critical;
    int rc = mbedtls_asn1_get_bool(&p, ext_end, &critical);
    if (rc != 0 && rc != MBEDTLS_ERR_ASN1_UNEXPECTED_TAG)
      return 0;
    if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
      return 0;
    if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) == 0)
      return san_has_ip(p, p + len, ip, ip_len);
    p = (unsigned char *)ext_end;
  }
  return 0;
}

/* Called by mbedTLS for every certificate of the chain; at depth 0 (the server's own) an IP
 * literal must appear among the iPAddress SANs. A mismatch is reported through the flags, so
 * the handshake fails with MBEDTLS_ERR_X509_CERT_VERIFY_FAILED like a DNS-name mismatch does. */
static int verify_ip_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  evs_tls__session_t *s = arg;
  if (depth == 0 && !evs_tls_crt_has_ip(crt, s->peer_ip, s->peer_ip_len)) {
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    s->verify_ip_failed = 1;
  }
  return 0;
}

static int bio_send(void *arg, const unsigned char *buf, size_t len) {
  evs_tls__session_t *s = arg;
  if (s->out_len + len > s->out_cap) {
    size_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap < s->out_len + len)
      cap *= 2;
    unsigned char *n = realloc(s->out, cap);
    if (n == NULL)
      return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    s->out = n;
    s->out_cap = cap;
  }
  memcpy(s->out + s->out_len, buf, len);
  s->out_len += len;
  return (int)len;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len) {
  evs_tls__session_t *s = arg;
  size_t avail = s->in_len - s->in_off;
  if (avail == 0)
    return MBEDTLS_ERR_SSL_WANT_READ;
  if (len > avail)
    len = avail;
  memcpy(buf, s->in + s->in_off, len);
  s->in_off += len;
  if (s->in_off == s->in_len)
    s->in_off = s->in_len = 0;
  return (int)len;
}

int evs_tls__session_init(evs_tls__session_t *s, evs_tls_config_t *cfg, const char *host) {
  memset(s, 0, sizeof *s);
  mbedtls_ssl_init(&s->ssl);
  int rc = mbedtls_ssl_setup(&s->ssl, &cfg->conf);
  if (rc != 0) {
    mbedtls_ssl_free(&s->ssl);
    return evs_tls_error(rc);
  }
  s->cfg = evs_tls_config_ref(cfg);
  mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
  if (uv_inet_pton(AF_INET, host, s->peer_ip) == 0)
    s->peer_ip_len = 4;
  else if (uv_inet_pton(AF_INET6, host, s->peer_ip) == 0)
    s->peer_ip_len = 16;
  if (s->peer_ip_len > 0) {
    /* No SNI for IP literals (RFC 6066 section 3); we check iPAddress SANs ourselves. */
    if (!cfg->insecure)
      mbedtls_ssl_set_verify(&s->ssl, verify_ip_cb, s);
  } else if ((rc = mbedtls_ssl_set_hostname(&s->ssl, host)) != 0) {
    evs_tls__session_free(s);
    return evs_tls_error(rc);
  }
  return 0;
}

void evs_tls__session_free(evs_tls__session_t *s) {
  if (s->cfg == NULL)
    return;
  mbedtls_ssl_free(&s->ssl);
  evs_tls_config_unref(s->cfg);
  s->cfg = NULL;
  free(s->in);
  free(s->out);
  s->in = s->out = NULL;
}

int evs_tls__session_feed(evs_tls__session_t *s, const void *buf, size_t len) {
  if (s->in_off > 0) {
    memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
    s->in_len -= s->in_off;
    s->in_off = 0;
  }
  if (s->in_len + len > s->in_cap) {
    size_t cap = s->in_cap ? s->in_cap : 16384;
    while (cap < s->in_len + len)
      cap *= 2;
    unsigned char *n = realloc(s->in, cap);
    if (n == NULL)
      return UV_ENOMEM;
    s->in = n;
    s->in_cap = cap;
  }
  memcpy(s->in + s->in_len, buf, len);
  s->in_len += len;
  return 0;
}

int evs_tls__session_handshake(evs_tls__session_t *s) {
  int rc = mbedtls_ssl_handshake(&s->ssl);
  if (rc == 0)
    return 0;
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
    return 1;
  return evs_tls_error(rc);
}

int evs_tls__session_read(evs_tls__session_t *s, void *buf, size_t cap) {
  int rc = mbedtls_ssl_read(&s->ssl, buf, cap);
  if (rc > 0)
    return rc;
  if (rc == 0)
    return EVS_ECLOSED;
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
    return 0;
  return evs_tls_error(rc);
}

int evs_tls__session_write(evs_tls__session_t *s, const void *buf, size_t len) {
  const unsigned char *p = buf;
  while (len > 0) {
    int rc = mbedtls_ssl_write(&s->ssl, p, len);
    if (rc < 0)
      return evs_tls_error(rc);
    p += rc;
    len -= (size_t)rc;
  }
  return 0;
}

void evs_tls__session_take_out(evs_tls__session_t *s, unsigned char **buf, size_t *len) {
  *buf = s->out;
  *len = s->out_len;
  if (s->out_len == 0)
    *buf = NULL;
  else
    s->out = NULL, s->out_len = s->out_cap = 0;
}

int evs_tls__session_pending(const evs_tls__session_t *s) {
  return mbedtls_ssl_get_bytes_avail(&s->ssl) > 0 || s->in_off < s->in_len;
}

int evs_tls__session_close_notify(evs_tls__session_t *s) {
  return evs_tls_error(mbedtls_ssl_close_notify(&s->ssl));
}
