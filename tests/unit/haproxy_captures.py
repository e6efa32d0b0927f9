"""Literal answers of Debian's HAProxy 2.6.12 runtime API, captured on this machine.

Backend `pool` (roundrobin, `option httpchk GET /cgi-bin/health`) with a static
server `legacy` (`server legacy ... weight 7 check`) and servers added at run time:
`app-0a1b2c3d` (weight 12, ready), `app-1e2f3a4b` (weight 200, ready, three
`/cgi-bin/burn?seconds=2` requests in flight in STAT_BUSY), `app-5c6d7e8f` (weight
1, drain), `app-99990000` (port 1: nothing listens, checks fail, DOWN),
`app-aaaa0000` (added without `check` and never set ready: maintenance). STAT_5XX
is a server on the host answering 503 to `/err`, after six such requests.
"""

SERVERS_STATE = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 pool 1 legacy 127.0.0.1 2 0 7 7 4 15 3 4 6 0 0 0 - 32876 - 0 0 - - 0
3 pool 2 app-0a1b2c3d 127.0.0.1 2 0 12 12 4 15 3 4 6 0 0 0 - 32875 - 0 0 - - 0
3 pool 3 app-1e2f3a4b 127.0.0.1 2 0 200 200 4 15 3 4 6 0 0 0 - 32876 - 0 0 - - 0
3 pool 4 app-5c6d7e8f 127.0.0.1 2 8 1 1 4 15 3 4 6 0 0 0 - 32876 - 0 0 - - 0
3 pool 5 app-99990000 127.0.0.1 0 0 3 3 3 8 2 0 6 0 0 0 - 1 - 0 0 - - 0
3 pool 6 app-aaaa0000 127.0.0.1 0 1 4 4 4 1 0 0 0 0 0 0 - 32875 - 0 0 - - 0
"""

STAT_BUSY = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
pool,legacy,0,0,0,1,,3,254,961,,0,,0,0,0,0,UP,7,1,0,0,0,11,0,,1,3,1,,3,,2,0,,3,L7OK,200,12,0,1,0,2,0,0,,,,3,0,0,,,,,10,,,0,0,0,0,,,,Layer7 check passed,,2,3,4,,,,127.0.0.1:32876,,http,,,,,,,,0,3,0,,,0,,0,0,0,0,0,0,0,0,1,7,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
pool,app-0a1b2c3d,0,0,0,1,,5,418,2007,,0,,0,0,0,0,UP,12,1,0,0,0,11,0,,1,3,2,,5,,2,0,,5,L7OK,200,3,0,3,0,2,0,0,,,,5,0,0,,,,,10,,,0,0,0,0,,,,Layer7 check passed,,2,3,4,,,,127.0.0.1:32875,,http,,,,,,,,0,5,0,,,0,0,0,0,0,0,0,0,0,0,1,12,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
pool,app-1e2f3a4b,0,0,3,3,,75,6048,26712,,0,,0,0,0,0,UP,200,1,0,0,0,11,0,,1,3,3,,75,,2,3,,72,L7OK,200,8,0,36,0,36,0,0,,,,72,0,0,,,,,1,,,0,0,1,1,,,,Layer7 check passed,,2,3,4,,,,127.0.0.1:32876,,http,,,,,,,,0,75,0,,,0,0,0,0,1,1,0,0,0,3,4,200,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
pool,app-5c6d7e8f,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,1,1,0,0,0,11,0,,1,3,4,,0,,2,0,,0,L7OK,200,7,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,3,4,,,,127.0.0.1:32876,,http,,,,,,,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
pool,app-99990000,0,0,0,1,,1,0,0,,0,,0,0,0,1,DOWN,3,1,0,1,1,10,10,,1,3,5,,1,,2,0,,1,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,10,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,1,1,0,,,,127.0.0.1:1,,http,,,,,,,,0,1,0,,,0,0,0,0,0,0,0,0,0,0,1,3,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
pool,app-aaaa0000,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,11,,,1,3,6,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:32875,,http,,,,,,,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,0,4,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
"""

STAT_5XX = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
pool,app-5e5e5e5e,0,0,0,1,,7,592,914,,0,,0,0,0,0,UP 1/3,5,1,0,0,0,0,0,,1,3,7,,7,,2,7,,7,INI,,,0,1,0,0,6,0,,,,7,0,0,,,,,0,,,0,0,1,3,,,,Initializing,,2,3,2,,,,127.0.0.1:19002,,http,,,,,,,,0,7,0,,,0,0,0,0,1,7,0,0,0,0,1,5,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
"""

STAT_BACKEND = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
pool,BACKEND,0,0,0,1,999,80,6720,29680,0,0,,0,0,0,1,UP,219,3,0,,0,4,0,,1,3,0,,81,,1,0,,80,,,,0,40,0,40,0,0,,,,80,0,0,0,0,0,0,3,,,0,0,1,1,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,81,0,0,0,,,0,0,1,1,0,,,,,219,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,95,95,32083,6832,0,0,
"""

SHOW_INFO = """\
Name: HAProxy
Version: 2.6.12-1+deb12u4
Release_date: 2026/10/17
Nbthread: 2
Nbproc: 1
Process_num: 1
Pid: 15844
Uptime: 0d 0h01m23s
Uptime_sec: 83
Memmax_MB: 0
"""

