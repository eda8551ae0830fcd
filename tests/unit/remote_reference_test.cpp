// docker:// and docker-daemon: references as skopeo and docker users write them.
#include <gtest/gtest.h>

#include "slimtrace/image/reference.hpp"
#include "slimtrace/pipeline/build.hpp"

namespace slimtrace::image {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST(RemoteReferenceTest, RegistryNamesAreNormalisedLikeDocker) {
  auto r = parse_reference("docker://busybox");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->transport, Transport::Registry);
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "library/busybox");
  EXPECT_EQ(r->tag, "latest");
  EXPECT_TRUE(r->is_remote());
  EXPECT_TRUE(r->path.empty());
  EXPECT_EQ(r->to_string(), "docker://docker.io/library/busybox:latest");

  r = parse_reference("docker://127.0.0.1:5000/team/app:1.2");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->registry, "127.0.0.1:5000");
  EXPECT_EQ(r->repository, "team/app");
  EXPECT_EQ(r->tag, "1.2");

  r = parse_reference("docker://localhost/app@" + kDigest);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->registry, "localhost");
  EXPECT_EQ(r->repository, "app");
  EXPECT_EQ(r->digest, kDigest);
  EXPECT_EQ(r->name(), "localhost/app@" + kDigest);

  r = parse_reference("docker://someone/tool:v2");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "someone/tool");
}

TEST(RemoteReferenceTest, BadRegistryReferencesSayWhatIsWrong) {
  auto r = parse_reference("docker:busybox");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("docker://"), std::string::npos) << r.error().message;
  r = parse_reference("docker://reg.example/App:1");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("bad repository name 'App'"), std::string::npos) << r.error().message;
  r = parse_reference("docker://reg.example/app@sha256:1234");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("bad digest"), std::string::npos) << r.error().message;
  r = parse_reference("docker://reg.example/app:bad!tag");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("bad tag"), std::string::npos) << r.error().message;
}

TEST(RemoteReferenceTest, DaemonReferencesKeepTheNameAsGiven) {
  auto r = parse_reference("docker-daemon:web");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->transport, Transport::DockerDaemon);
  EXPECT_EQ(r->repository, "web");
  EXPECT_EQ(r->tag, "latest");
  EXPECT_EQ(r->to_string(), "docker-daemon:web:latest");

  r = parse_reference("docker-daemon:localhost:5000/team/web:1");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->repository, "localhost:5000/team/web");
  EXPECT_EQ(r->tag, "1");

  r = parse_reference("docker-daemon:" + kDigest);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->repository.empty());
  EXPECT_EQ(r->digest, kDigest);
  EXPECT_EQ(r->to_string(), "docker-daemon:" + kDigest);

  r = parse_reference("docker-daemon:web@" + kDigest);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("image ID"), std::string::npos) << r.error().message;
}

TEST(RemoteReferenceTest, BuildDefaultsForRemoteInputs) {
  auto in = parse_reference("docker-daemon:web:1");
  ASSERT_TRUE(in);
  ImageRef out = pipeline::default_output_for(*in);
  EXPECT_EQ(out.to_string(), "docker-daemon:web.slim:1");
  EXPECT_EQ(pipeline::default_seccomp_path_for(out).string(), "web.slim_1.seccomp.json");

  in = parse_reference("docker://127.0.0.1:5000/team/app:2");
  ASSERT_TRUE(in);
  out = pipeline::default_output_for(*in);
  EXPECT_EQ(out.transport, Transport::OciLayout);
  EXPECT_EQ(out.to_string(), "oci:app.slim:2");
}

}  // namespace
}  // namespace slimtrace::image
