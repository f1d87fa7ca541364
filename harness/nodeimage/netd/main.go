// harness-netd: the multi-node pod network of the registry-less kind node image
// (harness.nodeimage). Written for this project; one DaemonSet pod per node,
// host network. Every few seconds it:
//
//  1. reads its own Node's spec.podCIDR and writes the CNI conflist that the
//     kubelet/containerd use for pods on this node: bridge + host-local (that
//     /24) + portmap, plugins from Debian's containernetworking-plugins;
//  2. routes every other node's podCIDR via that node's InternalIP (all kind
//     nodes share one Docker network, so one hop suffices);
//  3. masquerades traffic from the cluster pod subnet to anything outside it,
//     so pods reach the node network and beyond while pod-to-pod stays un-NATed.
//
// It talks to the API server with the pod's service account over plain HTTPS
// (no client library): GET /api/v1/nodes. CONTROL_PLANE_ENDPOINT (added by
// kind) is used when set, so the network comes up before kube-proxy does.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

const (
	saDir      = "/var/run/secrets/kubernetes.io/serviceaccount"
	confName   = "10-harness-netd.conflist"
	natChain   = "HARNESS-NETD-MASQ"
	resyncWait = 5 * time.Second
)

type nodeList struct {
	Items []node `json:"items"`
}

type node struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR string `json:"podCIDR"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

func (n node) internalIPv4() net.IP {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			if ip := net.ParseIP(a.Address); ip != nil && ip.To4() != nil {
				return ip
			}
		}
	}
	return nil
}

type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient() (*apiClient, error) {
	endpoint := os.Getenv("CONTROL_PLANE_ENDPOINT")
	if endpoint == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("neither CONTROL_PLANE_ENDPOINT nor KUBERNETES_SERVICE_HOST/PORT is set")
		}
		endpoint = net.JoinHostPort(host, port)
	}
	caPEM, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("service account ca.crt holds no certificate")
	}
	return &apiClient{
		base: "https://" + endpoint,
		http: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		},
	}, nil
}

func (c *apiClient) nodes(ctx context.Context) ([]node, error) {
	// The token is re-read every time: the kubelet rotates projected tokens.
	token, err := os.ReadFile(filepath.Join(saDir, "token"))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/nodes: %s", resp.Status)
	}
	var list nodeList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// conflist is the CNI config for pods on this node.
func conflist(podCIDR string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "harness-netd",
		"plugins": []any{
			map[string]any{
				"type":             "bridge",
				"bridge":           "harness0",
				"isDefaultGateway": true,
				"ipMasq":           false, // masquerading is ours: only traffic leaving the pod subnet
				"hairpinMode":      true,
				"mtu":              1500,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"dataDir": "/run/cni-ipam-state",
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

func syncRoutes(self string, nodes []node) {
	for _, n := range nodes {
		if n.Metadata.Name == self || n.Spec.PodCIDR == "" {
			continue
		}
		gw := n.internalIPv4()
		_, dst, err := net.ParseCIDR(n.Spec.PodCIDR)
		if gw == nil || err != nil || dst.IP.To4() == nil {
			continue
		}
		route := &netlink.Route{Dst: dst, Gw: gw}
		if err := netlink.RouteReplace(route); err != nil {
			log.Printf("route %s via %s (%s): %v", dst, gw, n.Metadata.Name, err)
		}
	}
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "5"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ensureMasquerade keeps one chain: pod subnet -> outside the pod subnet is masqueraded.
func ensureMasquerade(podSubnet string) error {
	if iptables("-t", "nat", "-L", natChain, "-n") != nil {
		if err := iptables("-t", "nat", "-N", natChain); err != nil {
			return err
		}
	}
	if iptables("-t", "nat", "-C", "POSTROUTING", "-j", natChain) != nil {
		if err := iptables("-t", "nat", "-A", "POSTROUTING", "-j", natChain); err != nil {
			return err
		}
	}
	rule := []string{"-s", podSubnet, "!", "-d", podSubnet, "-m", "addrtype", "!", "--dst-type", "LOCAL",
		"-j", "MASQUERADE"}
	if iptables(append([]string{"-t", "nat", "-C", natChain}, rule...)...) != nil {
		return iptables(append([]string{"-t", "nat", "-A", natChain}, rule...)...)
	}
	return nil
}

func main() {
	self := os.Getenv("NODE_NAME")
	podSubnet := os.Getenv("POD_SUBNET")
	confDir := os.Getenv("CNI_CONF_DIR")
	if confDir == "" {
		confDir = "/etc/cni/net.d"
	}
	if self == "" || podSubnet == "" {
		log.Fatal("NODE_NAME and POD_SUBNET must be set")
	}
	client, err := newAPIClient()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("harness-netd on %s: pod subnet %s, API %s", self, podSubnet, client.base)
	for {
		if err := ensureMasquerade(podSubnet); err != nil {
			log.Print(err)
		}
		nodes, err := client.nodes(ctx)
		if err != nil {
			log.Print(err)
		} else {
			for _, n := range nodes {
				if n.Metadata.Name != self || n.Spec.PodCIDR == "" {
					continue
				}
				data, err := conflist(n.Spec.PodCIDR)
				if err == nil {
					var changed bool
					changed, err = writeIfChanged(filepath.Join(confDir, confName), data)
					if changed {
						log.Printf("wrote %s for %s", confName, n.Spec.PodCIDR)
					}
				}
				if err != nil {
					log.Print(err)
				}
			}
			syncRoutes(self, nodes)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(resyncWait):
		}
	}
}
