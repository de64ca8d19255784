# jamba_find_dep(TARGET PKG HEADER LIB DEBIAN_PACKAGE [OPTIONAL]): an INTERFACE target TARGET carrying the
# include directory and library of a C dependency, found through pkg-config module PKG when pkg-config is
# installed, else by searching for HEADER and library LIB (honouring CMAKE_PREFIX_PATH). A missing
# dependency is fatal, with a message naming the Debian package that provides it, unless OPTIONAL; either
# way ${TARGET}_FOUND tells the caller.
#
# -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON skips pkg-config and uses the search alone. tools/gpu-check.sh
# does so for its carried Debian packages: their .pc files say prefix=/usr, so pkg-config would answer
# -I/usr/include, drop it as a system path, and the build would miss the carried headers.
if(NOT CMAKE_DISABLE_FIND_PACKAGE_PkgConfig)
  find_package(PkgConfig QUIET)
endif()

function(jamba_find_dep target pkg header lib debian)
  set(${target}_FOUND OFF PARENT_SCOPE)
  if(PKG_CONFIG_FOUND AND NOT CMAKE_DISABLE_FIND_PACKAGE_PkgConfig)
    pkg_check_modules(JB_DEP_${target} QUIET IMPORTED_TARGET ${pkg})
    if(JB_DEP_${target}_FOUND)
      add_library(${target} INTERFACE)
      target_link_libraries(${target} INTERFACE PkgConfig::JB_DEP_${target})
      set(${target}_FOUND ON PARENT_SCOPE)
      return()
    endif()
  endif()
  find_path(JB_DEP_${target}_INCLUDE ${header})
  find_library(JB_DEP_${target}_LIBRARY ${lib})
  if(NOT JB_DEP_${target}_INCLUDE OR NOT JB_DEP_${target}_LIBRARY)
    if("OPTIONAL" IN_LIST ARGN)
      message(STATUS "jamba: ${pkg} not found (install ${debian})")
      return()
    endif()
    message(FATAL_ERROR "${pkg} not found (${header}, lib${lib}): on Debian install ${debian} "
                        "(tools/deps.sh does), or point CMAKE_PREFIX_PATH at a folder holding include/ and lib/")
  endif()
  add_library(${target} INTERFACE)
  target_include_directories(${target} INTERFACE ${JB_DEP_${target}_INCLUDE})
  target_link_libraries(${target} INTERFACE ${JB_DEP_${target}_LIBRARY})
  set(${target}_FOUND ON PARENT_SCOPE)
  message(STATUS "jamba: ${pkg} from ${JB_DEP_${target}_LIBRARY} (headers in ${JB_DEP_${target}_INCLUDE})")
endfunction()
