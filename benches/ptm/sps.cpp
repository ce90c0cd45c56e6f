// One SPS cell on one persistent transactional memory of a durabletx checkout.
//
// Built by scripts/ptm-sps, once per PTM, with that PTM's -DUSE_* flag and
// -I<checkout>: ptms/ptm.h then names the PTM's class and word type (PTM_CLASS,
// PTM_TYPE; RomulusLog's are named below), and graphs/PBenchmarkSPS.hpp is the checkout's own SPS benchmark (an
// array of 10,000,000 words, each transaction swaps S random pairs, the array's sum
// checked at the end with an assert). This file only picks the cell from the command
// line and prints one line the `sps` binary of the benches crate reads:
//
//     sps ptm=<class> threads=<T> swaps=<S> seconds=<D> txn_per_s=<N>
//
// Usage: sps-<ptm> THREADS SWAPS SECONDS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "graphs/PBenchmarkSPS.hpp"
#include "ptms/ptm.h"

// ptms/ptm.h has no entry for the flat-combining RomulusLog; name it here.
#if defined USE_ROM_LOG_FC && !defined PTM_CLASS
#include "ptms/romuluslog/RomLogFC.hpp"
#define PTM_CLASS romlogfc::RomLog
#define PTM_TYPE romlogfc::persist
#endif

#ifdef NDEBUG
#error "the SPS sum check is an assert: build without -DNDEBUG"
#endif

int main(int argc, char* argv[]) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s THREADS SWAPS SECONDS\n", argv[0]);
        return 2;
    }
    const int threads = std::atoi(argv[1]);
    const long swaps = std::atol(argv[2]);
    const long secs = std::atol(argv[3]);
    if (threads < 1 || swaps < 1 || secs < 1) {
        std::fprintf(stderr, "THREADS, SWAPS and SECONDS must be at least 1\n");
        return 2;
    }
    PBenchmarkSPS bench(threads);
    std::string name;
    // One run: the benchmark returns swaps per second over the whole window.
    const uint64_t swaps_per_s =
        bench.benchmarkSPSInteger<PTM_CLASS, PTM_TYPE>(name, std::chrono::seconds(secs), swaps, 1);
    std::printf("sps ptm=%s threads=%d swaps=%ld seconds=%ld txn_per_s=%llu\n", name.c_str(),
                threads, swaps, secs, static_cast<unsigned long long>(swaps_per_s / swaps));
    return 0;
}
