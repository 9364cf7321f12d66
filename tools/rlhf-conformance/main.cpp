// rlhf-conformance FILE... [--float] [--summary] [--backend cpu|cuda]
// Runs every case of every vector file; one line per failing case; ends with
// "N passed, M failed". Exit status 0 only when M is 0. With --backend cuda
// (a runner built by nvcc, main.cu) the ops with a device implementation run
// on the device; the last line also says how many cases ran on the CPU
// instead; exit status 77 when no GPU is present.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "handlers.hpp"

int main(int argc, char** argv) {
  using namespace rlhf_conformance;
  bool use_float = false, summary = false;
  std::string backend = "cpu";
  // Float tolerances (docs/conformance.md): inputs are rounded to float, the
  // library accumulates in double.
  tolerance float_tol{1e-5, 1e-6};
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--float")
      use_float = true;
    else if (a == "--summary")
      summary = true;
    else if (a == "--backend" && i + 1 < argc)
      backend = argv[++i];
    else if (a.rfind("--backend=", 0) == 0)
      backend = a.substr(10);
    else if (a == "--float-rtol" && i + 1 < argc)
      float_tol.rtol = std::stod(argv[++i]);
    else if (a == "--float-atol" && i + 1 < argc)
      float_tol.atol = std::stod(argv[++i]);
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: rlhf-conformance [--float] [--summary] [--backend cpu|cuda] FILE...\n"
                   "  --float    run in single precision with the documented float tolerances\n"
                   "  --summary  also print one line per file (op, cases passed)\n"
                   "  --backend  cpu (default) or cuda (the ops run on the device; needs a CUDA build and a GPU)\n"
                   "  --float-rtol X, --float-atol Y  override the float tolerances (1e-5, 1e-6)\n";
      return 0;
    } else
      files.push_back(a);
  }
  if (backend == "cuda") {
#ifdef RLHF_CONFORMANCE_CUDA
    if (!rlhf::cuda_available()) {
      std::cout << "rlhf-conformance: --backend cuda: no CUDA device here: skipped\n";
      return 77;
    }
    use_cuda = true;
#else
    std::cerr << "rlhf-conformance: --backend cuda: this runner was built without CUDA (nvcc was not found)\n";
    return 2;
#endif
  } else if (backend != "cpu") {
    std::cerr << "rlhf-conformance: unknown backend '" << backend << "' (cpu or cuda)\n";
    return 2;
  }
  if (files.empty()) {
    std::cerr << "rlhf-conformance: no vector file given (try --help)\n";
    return 2;
  }
  long passed = 0, failed = 0, host_only = 0;
  for (const auto& f : files) {
    std::ifstream in(f);
    if (!in) {
      std::cout << f << ": cannot open\n";
      ++failed;
      continue;
    }
    json doc;
    try {
      doc = json::parse(in);
    } catch (const std::exception& e) {
      std::cout << f << ": not valid JSON (" << e.what() << ")\n";
      ++failed;
      continue;
    }
    const auto op = doc.value("op", std::string("?"));
    tolerance tol{doc.value("rtol", 1e-9), doc.value("atol", 1e-12)};
    if (use_float) tol = {std::max(tol.rtol, float_tol.rtol), std::max(tol.atol, float_tol.atol)};
    long fp = 0, ff = 0, fh = 0;
    for (const auto& c : doc.at("cases")) {
      const auto name = c.value("name", std::string("?"));
      const auto o = use_float ? run_case<float>(op, c, tol) : run_case<double>(op, c, tol);
      if (use_cuda && !o.on_device) ++fh;
      if (o.passed) {
        ++fp;
      } else {
        ++ff;
        std::cout << "FAIL " << op << "/" << name << ": " << o.message << "\n";
      }
    }
    if (summary) {
      auto ref = doc.value("reference", std::string());
      if (auto at = ref.find(" @ "); at != std::string::npos) ref.resize(at);  // drop the commit
      if (ref.size() > 72) ref = ref.substr(0, 69) + "...";
      char line[128];
      std::snprintf(line, sizeof line, "  %-32s %3ld/%-3ld ", op.c_str(), fp, fp + ff);
      std::cout << line << (ff ? "FAILED  " : "ok      ");
      if (use_cuda) std::cout << (fh == 0 ? "device  " : fh == fp + ff ? "cpu     " : "mixed   ");
      std::cout << ref << "\n";
    }
    passed += fp;
    failed += ff;
    host_only += fh;
  }
  std::cout << passed << " passed, " << failed << " failed";
  if (use_cuda)
    std::cout << " (" << (passed + failed - host_only) << " on the device, " << host_only
              << " on the CPU: no device implementation or a NaN-input case)";
  std::cout << "\n";
  return failed == 0 ? 0 : 1;
}
