/* room: core. The build's version (EVS_VERSION, from CMakeLists.txt's project()) and git
 * revision: written into a generated source at build time (tools/revision.cmake), so a rebuild
 * after a commit reports the commit it was built from. "unknown" outside git; "-dirty" when the
 * tree had uncommitted changes. */
#ifndef EVSCALE_VERSION_H
#define EVSCALE_VERSION_H

extern const char evs_git_revision[];

#endif
