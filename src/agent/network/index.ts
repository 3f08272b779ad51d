export {
  type AttachVMParams,
  type BridgeState,
  HostNetwork,
  type HostNetworkOptions,
  type HostNetworkState,
  type TapState,
} from './host.ts';
export { bridgeName, networkId, tapName, vmId, vmTapName } from './names.ts';
export type { ChainState, RuleState } from './rules.ts';
export { fromImpNetwork, type NetworkSpec } from './spec.ts';
