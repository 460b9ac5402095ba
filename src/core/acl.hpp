// POSIX ACLs on device nodes: how an unprivileged VMM gets to open /dev/vfio/<group> for as long as its lease
// lasts, on kernels where hostdevd cannot hand it a VFIO cdev fd instead (no CONFIG_IOMMUFD, e.g. Debian's 6.1 and
// 6.12). The node is never opened (opening a VFIO group has effects): the ACL is set through an O_PATH descriptor.
#pragma once

#include "core/sysfs.hpp"

#include <cstdint>
#include <string>

namespace hostdev::core {

// Adds user:<uid>:rw- to the node's access ACL (keeping its other entries; the mask becomes rw-). KernelError when
// the node is missing or the file system refuses ACLs.
void grant_user_access(const Sysfs &sysfs, const std::string &node, std::uint32_t uid);
// Removes user:<uid> again; the ACL goes when only the mode's entries remain. Missing node: nothing to do.
void revoke_user_access(const Sysfs &sysfs, const std::string &node, std::uint32_t uid);
// Whether the node's ACL has a user:<uid> entry with rw (for checks and tests).
bool has_user_access(const Sysfs &sysfs, const std::string &node, std::uint32_t uid);

} // namespace hostdev::core
