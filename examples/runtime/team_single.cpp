// examples::make_team without MPI: always one process.
#include "team.hpp"

namespace examples {

std::unique_ptr<Team> make_team(int*, char***) { return std::make_unique<Team>(); }
bool built_with_mpi() { return false; }

}  // namespace examples
