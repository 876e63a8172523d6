# Installs libstoa as a CMake package (find_package(stoa)) and a pkg-config
# module (stoa.pc), plus the public headers and the `stoa` CLI.
# Included at the end of the top-level CMakeLists.txt.
include(CMakePackageConfigHelpers)

set(STOA_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/stoa")

install(TARGETS stoa EXPORT stoaTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/stoa
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(TARGETS stoa_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(EXPORT stoaTargets
  FILE stoaTargets.cmake
  NAMESPACE stoa::
  DESTINATION ${STOA_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/stoaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/stoaConfig.cmake
  INSTALL_DESTINATION ${STOA_CMAKE_DIR})
# 0.x: a minor version bump may break the API or the file format.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stoaConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/stoaConfig.cmake
  ${PROJECT_BINARY_DIR}/stoaConfigVersion.cmake
  DESTINATION ${STOA_CMAKE_DIR})

# pkg-config: paths relative to the .pc file, so `cmake --install --prefix P`
# yields a working module under any prefix.
set(STOA_PC_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(STOA_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(STOA_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(STOA_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH _stoa_pc_up "/prefix/${STOA_PC_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" _stoa_pc_up "${_stoa_pc_up}")
  set(STOA_PC_PREFIX "\${pcfiledir}/${_stoa_pc_up}")
  set(STOA_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(STOA_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/stoa.pc.in ${PROJECT_BINARY_DIR}/stoa.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/stoa.pc DESTINATION ${STOA_PC_DIR})
