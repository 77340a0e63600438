#include "proto/server/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A self-signed P-256 certificate and its key, as PEM files under TempDir.
struct PemFiles {
  std::string cert;
  std::string key;
};

std::string ToPem(int (*write)(BIO*, void*), void* object) {
  BIO* bio = BIO_new(BIO_s_mem());
  write(bio, object);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

int WriteCert(BIO* bio, void* x) { return PEM_write_bio_X509(bio, static_cast<X509*>(x)); }
int WriteKey(BIO* bio, void* k) {
  return PEM_write_bio_PrivateKey(bio, static_cast<EVP_PKEY*>(k), nullptr, nullptr, 0, nullptr,
                                  nullptr);
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

PemFiles MakeSelfSigned(const std::string& name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, subject);
  X509_sign(cert, key, EVP_sha256());
  PemFiles files{::testing::TempDir() + "/" + name + "_cert.pem",
                 ::testing::TempDir() + "/" + name + "_key.pem"};
  WriteFile(files.cert, ToPem(WriteCert, cert));
  WriteFile(files.key, ToPem(WriteKey, key));
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

TEST(ServerTlsCredentialsTest, MatchingPairBuildsCredentials) {
  const PemFiles a = MakeSelfSigned("a");
  ASSERT_OK_AND_ASSIGN(auto credentials, ServerTlsCredentials(a.cert, a.key));
  EXPECT_NE(credentials, nullptr);
}

TEST(ServerTlsCredentialsTest, KeyOfAnotherCertificateIsReportedAsAMismatch) {
  const PemFiles a = MakeSelfSigned("a");
  const PemFiles b = MakeSelfSigned("b");
  EXPECT_THAT(ServerTlsCredentials(a.cert, b.key),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("does not match"), HasSubstr(a.cert), HasSubstr(b.key))));
}

TEST(ServerTlsCredentialsTest, MalformedOrMissingFilesAreNamed) {
  const PemFiles a = MakeSelfSigned("a");
  const std::string junk = ::testing::TempDir() + "/junk.pem";
  WriteFile(junk, "not a pem\n");
  EXPECT_THAT(ServerTlsCredentials(junk, a.key),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--tls_cert"), HasSubstr(junk), HasSubstr("certificate"))));
  EXPECT_THAT(ServerTlsCredentials(a.cert, junk),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--tls_key"), HasSubstr(junk), HasSubstr("private key"))));
  // A certificate is not a key.
  EXPECT_THAT(ServerTlsCredentials(a.cert, a.cert),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls_key")));
  EXPECT_THAT(ServerTlsCredentials("/nonexistent/cert.pem", a.key),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/cert.pem")));
}

}  // namespace
}  // namespace colo
