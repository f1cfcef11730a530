// A per-op table of device implementations. Each device file registers its
// implementation at load time; the device-agnostic entry dispatches on the
// device of its first tensor argument.
#ifndef MMCOT_PYTORCH_DEVICE_REGISTRY_HPP
#define MMCOT_PYTORCH_DEVICE_REGISTRY_HPP

#include <ATen/ATen.h>

#include <map>
#include <utility>

namespace mmcot {

template <typename Op>
class DeviceImpls {
 public:
  using Fn = typename Op::Fn;

  static DeviceImpls& get() {
    static DeviceImpls impls;
    return impls;
  }
  bool add(at::DeviceType device, Fn fn) {
    table_[device] = fn;
    return true;
  }
  Fn find(at::DeviceType device) const {
    auto it = table_.find(device);
    return it == table_.end() ? nullptr : it->second;
  }

 private:
  std::map<at::DeviceType, Fn> table_;
};

template <typename Op, typename... Args>
void dispatch_device_impl(const at::Tensor& like, Args&&... args) {
  auto fn = DeviceImpls<Op>::get().find(like.device().type());
  TORCH_CHECK(fn != nullptr, Op::name, ": no implementation for device ",
              like.device(),
              like.is_cuda() ? "; this mmcot build has no CUDA kernels, "
                               "reinstall it with FORCE_CUDA=1 on a machine "
                               "with the CUDA toolkit"
                             : "");
  fn(std::forward<Args>(args)...);
}

}  // namespace mmcot

#define MMCOT_REGISTER_DEVICE_IMPL(Op, DEVICE, fn)                        \
  static const bool mmcot_registered_##Op##_##DEVICE =                    \
      ::mmcot::DeviceImpls<Op>::get().add(at::DeviceType::DEVICE, fn)

#endif  // MMCOT_PYTORCH_DEVICE_REGISTRY_HPP
