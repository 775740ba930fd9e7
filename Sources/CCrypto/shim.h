#ifndef TIERGATE_CCRYPTO_SHIM_H
#define TIERGATE_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

/// OPENSSL_free is a macro (it passes __FILE__/__LINE__), so Swift cannot call it.
static inline void CCrypto_free(void *ptr) { OPENSSL_free(ptr); }
#endif
