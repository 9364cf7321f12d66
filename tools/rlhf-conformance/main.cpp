// rlhf-conformance FILE... [--float] [--quiet]
// Runs every case of every vector file; one line per failing case; ends with
// "N passed, M failed". Exit status 0 only when M is 0.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "handlers.hpp"

int main(int argc, char** argv) {
  using namespace rlhf_conformance;
  bool use_float = false, summary = false;
  // Float tolerances (docs/conformance.md): inputs are rounded to float, the
  // library accumulates in double.
  tolerance float_tol{1e-5, 1e-6};
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--float") use_float = true;
    else if (a == "--summary") summary = true;
    else if (a == "--float-rtol" && i + 1 < argc) float_tol.rtol = std::stod(argv[++i]);
    else if (a == "--float-atol" && i + 1 < argc) float_tol.atol = std::stod(argv[++i]);
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: rlhf-conformance [--float] [--summary] FILE...\n"
                   "  --float    run in single precision with the documented float tolerances\n"
                   "  --summary  also print one line per file (op, cases passed)\n"
                   "  --float-rtol X, --float-atol Y  override the float tolerances (1e-5, 1e-6)\n";
      return 0;
    } else files.push_back(a);
  }
  if (files.empty()) {
    std::cerr << "rlhf-conformance: no vector file given (try --help)\n";
    return 2;
  }
  long passed = 0, failed = 0;
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
    long fp = 0, ff = 0;
    for (const auto& c : doc.at("cases")) {
      const auto name = c.value("name", std::string("?"));
      const auto o = use_float ? run_case<float>(op, c, tol) : run_case<double>(op, c, tol);
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
      std::cout << line << (ff ? "FAILED  " : "ok      ") << ref << "\n";
    }
    passed += fp;
    failed += ff;
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}
