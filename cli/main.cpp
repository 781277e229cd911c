// dmap: a thin main that dispatches to the subcommands and turns errors into exit codes
// (0 ok, 1 runtime failure, 2 bad input).
#include <yaml-cpp/yaml.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/interrupt.h"

namespace {

const char* kHelp = R"(usage: dmap <command> [options]

dmap predicts where each module of a large language model goes under every device-map
strategy, reproducing Hugging Face accelerate / transformers exactly.

commands:
  map       the device map a strategy produces (auto, balanced, balanced_low_0, sequential,
            infer_auto_device_map, cpu, disk, one GPU, or a hand-written map)
  memory    sizes per dtype, largest layer, KV cache per 1,000 tokens, per-module breakdown
  simulate  predicted memory, prefill and per-token time of every strategy x execution
            semantics on the scenario's hardware, the optimal placement and the verdict
  report    simulate + Markdown report with SVG charts under reports/<scenario>/
  run       run the model for real on dmap's CPU executor (checkpoint or random weights)
  profile   --real: calibrate this machine's cost-model figures from timed executor runs;
            --validate: check a calibration's predictions against fresh measurements
  export    gguf: write a checkpoint (or random weights) as llama.cpp's converter writes it

Run `dmap <command> --help` for its options. Exit codes: 0 ok, 1 runtime failure, 2 bad input.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kHelp;
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  dmap::install_interrupt_cleanup();  // before any thread: an interrupt removes scratch and temporaries
  try {
    if (command == "map") return dmap::cli::cmd_map(args);
    if (command == "memory") return dmap::cli::cmd_memory(args);
    if (command == "simulate") return dmap::cli::cmd_simulate(args);
    if (command == "report") return dmap::cli::cmd_report(args);
    if (command == "run") return dmap::cli::cmd_run(args);
    if (command == "profile") return dmap::cli::cmd_profile(args);
    if (command == "export") return dmap::cli::cmd_export(args);
    std::cerr << "dmap: unknown command '" << dmap::printable(command) << "'\n\n" << kHelp;
    return 2;
  } catch (const dmap::InputError& e) {
    std::cerr << "dmap: error: " << dmap::printable(e.text()) << "\n";
    return 2;
  } catch (const YAML::Exception& e) {
    std::cerr << "dmap: error: malformed input: " << dmap::printable(e.what()) << "\n";
    return 2;
  } catch (const dmap::RuntimeFailure& e) {
    std::cerr << "dmap: failed: " << dmap::printable(e.text()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "dmap: internal error: " << dmap::printable(e.what()) << "\n";
    return 1;
  }
}
