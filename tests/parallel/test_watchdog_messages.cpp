// The pieces of the collective watchdog and the start-up fingerprint that need no second rank: the hash, the
// config hash (equal for copies, different for other models), the mismatch messages and the timeout line.
#include <gtest/gtest.h>

#include "parallel/collective_watchdog.h"
#include "parallel/fingerprint.h"
#include "runtime/model_config.h"
#include "test_util.h"

using namespace mlarun;

TEST(Fingerprint, Fnv1aMatchesTheReferenceValues) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(Fingerprint, ConfigHashIgnoresThePathButNotTheModel) {
  const ModelConfig v2 = load_model_config_from_dir(mlarun::testing::data_dir() + "/deepseek-v2-tiny");
  const ModelConfig v3 = load_model_config_from_dir(mlarun::testing::data_dir() + "/deepseek-v3-tiny");
  ModelConfig copy = v2;
  copy.source = "/elsewhere/config.json";
  EXPECT_EQ(model_config_hash(v2), model_config_hash(copy));
  EXPECT_NE(model_config_hash(v2), model_config_hash(v3));
  ModelConfig eps = v2;
  eps.rms_norm_eps *= 2;  // a field to_json() does not list
  EXPECT_NE(model_config_hash(v2), model_config_hash(eps));
}

TEST(Fingerprint, AgreeingRanksGiveNoMessage) {
  RunFingerprint f{"/m/a", 42, "tp=2 block-size=8"};
  EXPECT_EQ(fingerprint_mismatch({f, f}), "");
  EXPECT_EQ(fingerprint_mismatch({f}), "");
  RunFingerprint elsewhere = f;
  elsewhere.model = "/other/path";  // the same config at another path is the same model
  EXPECT_EQ(fingerprint_mismatch({f, elsewhere}), "");
}

TEST(Fingerprint, ADifferentModelNamesTheRanksAndTheDirectories) {
  RunFingerprint a{"/m/v2-tiny", 1, "tp=3"}, b{"/m/v3-tiny", 2, "tp=3"};
  const std::string m = fingerprint_mismatch({a, b, b});
  EXPECT_NE(m.find("rank 1's model config differs from rank 0's (/m/v3-tiny vs /m/v2-tiny)"), std::string::npos) << m;
  EXPECT_NE(m.find("ranks 1, 2 differ from rank 0"), std::string::npos) << m;
  EXPECT_NE(m.find("--model"), std::string::npos) << m;
}

TEST(Fingerprint, DifferentOptionsNameTheOptionsAndValues) {
  RunFingerprint a{"/m", 7, "tp=2 block-size=8 max-num-seqs=256"}, b{"/m", 7, "tp=2 block-size=16 max-num-seqs=4"};
  const std::string m = fingerprint_mismatch({a, a, b});
  EXPECT_NE(m.find("rank 2's options differ from rank 0's (block-size 16 vs 8, max-num-seqs 4 vs 256)"),
            std::string::npos)
      << m;
  // The model is compared first.
  RunFingerprint c{"/n", 8, "tp=2 block-size=16"};
  EXPECT_NE(fingerprint_mismatch({a, b, c}).find("rank 2's model config differs"), std::string::npos);
}

TEST(Watchdog, DescribesTheCollective) {
  EXPECT_EQ((CollectiveInfo{"all_reduce", 4096, "f32"}.describe()), "all_reduce of 4096 f32");
  EXPECT_EQ((CollectiveInfo{"broadcast", 8, "bytes", 0}.describe()), "broadcast of 8 bytes from rank 0");
  EXPECT_EQ((CollectiveInfo{"barrier"}.describe()), "barrier");
}

TEST(Watchdog, TimeoutLineNamesTheRanksItWaitedFor) {
  // Rank 0 of 4 timed out in collective #12: rank 1 stayed silent, rank 2 waits in #11, rank 3 waits in #12 too.
  const std::string m =
      CollectiveWatchdog::timeout_message(0, "mpi", "all_reduce of 4096 f32", 12, 3.04, 3, {-1, -1, 11, 12});
  EXPECT_EQ(m,
            "collective watchdog: all_reduce of 4096 f32 (collective #12 on mpi) has not completed after 3.0 s "
            "(--collective-timeout 3); waiting for rank 1 (no answer: stopped, hung, or busy outside any "
            "collective), rank 2 (waiting in collective #11); rank 3 is waiting in it too; ending the job");
  const std::string all_there =
      CollectiveWatchdog::timeout_message(1, "nccl", "barrier", 5, 600.2, 600, {5, 5, 5});
  EXPECT_NE(all_there.find("every other rank is waiting in it too"), std::string::npos) << all_there;
}
