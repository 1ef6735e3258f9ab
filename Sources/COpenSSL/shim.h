#pragma once
// Only libcrypto's EVP AES-256-GCM is used (Sources/Mesh/Session/AESGCM.swift).
#include <openssl/evp.h>
